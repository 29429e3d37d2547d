"""Callback signatures, per-task callback tokens and per-task secrets.

The provider signs `<timestamp>.<raw body>` with HMAC-SHA256. We verify on the exact bytes we
received, before parsing, with a constant-time compare, and accept any of several secrets so a
secret can be rotated without dropping callbacks in flight.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence

from itsdangerous import BadSignature, URLSafeSerializer

from receiver.errors import SignatureError

__all__ = [
    "TIMESTAMP_TOLERANCE_S",
    "CallbackTokens",
    "derive_task_secret",
    "replay_key",
    "sign_callback",
    "verify_callback",
    "webhook_key",
]

TIMESTAMP_TOLERANCE_S = 300
_SIGNATURE_PREFIX = "sha256="
_UNIX_SECONDS = re.compile(r"-?[0-9]{1,12}")
_TASK_SECRET_CONTEXT = b"aimusic-relay/task-webhook-secret/v1/"


def sign_callback(secret: str, timestamp: int | str, body: bytes) -> str:
    """Return the `X-Webhook-Signature` value the provider sends for these bytes."""
    message = str(timestamp).encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return _SIGNATURE_PREFIX + digest


def verify_callback(
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_s: int = TIMESTAMP_TOLERANCE_S,
) -> None:
    """Raise `SignatureError` unless one of `secrets` signed `body` within the time window.

    `headers` must be case-insensitive (Starlette's `Headers` is).
    """
    if not secrets:
        raise SignatureError("no_secret", "no webhook secret is configured for this route")
    signature = headers.get("x-webhook-signature")
    timestamp = headers.get("x-webhook-timestamp")
    if not signature or not timestamp:
        raise SignatureError(
            "missing_signature", "X-Webhook-Signature and X-Webhook-Timestamp are required"
        )
    # ASCII digits only: int() would also take "1_0", non-ASCII spaces, and 400-digit numbers
    # that overflow the float comparison below.
    if not _UNIX_SECONDS.fullmatch(timestamp):
        raise SignatureError("bad_timestamp", "X-Webhook-Timestamp is not unix seconds")
    signed_at = int(timestamp)
    if abs(now - signed_at) > tolerance_s:
        raise SignatureError(
            "stale_timestamp", f"X-Webhook-Timestamp is more than {tolerance_s} s from our clock"
        )
    presented = signature.strip().encode("ascii", "replace")
    for secret in secrets:
        expected = sign_callback(secret, timestamp, body).encode("ascii")
        if hmac.compare_digest(expected, presented):
            return
    raise SignatureError("bad_signature", "X-Webhook-Signature does not match the body")


def replay_key(route: str, timestamp: str, body: bytes) -> str:
    """What makes a callback the same signed callback: its route, signed timestamp and body.

    An attacker holding one captured callback can resend it, and change every header the
    signature does not cover, within the timestamp window; these bytes they cannot change.
    """
    digest = hashlib.sha256(b"aimusic-relay/replay/v1\0" + route.encode("utf-8") + b"\0")
    digest.update(timestamp.encode("ascii") + b"\0")
    digest.update(body)
    return digest.hexdigest()


def webhook_key(route: str, task_id: str | None, webhook_id: str | None) -> str | None:
    """The provider's event id (`X-Webhook-Id`), scoped to the route and the signed task id,
    so no callback can make another task's event a duplicate."""
    if webhook_id is None:
        return None
    parts = (route, task_id or "", webhook_id)
    digest = hashlib.sha256(b"aimusic-relay/webhook-id/v1\0" + "\0".join(parts).encode())
    return digest.hexdigest()


def derive_task_secret(secret_key: str, task_ref: str) -> str:
    """A webhook secret unique to one task, recomputable from `RELAY_SECRET_KEY` alone."""
    digest = hmac.new(
        secret_key.encode("utf-8"), _TASK_SECRET_CONTEXT + task_ref.encode("utf-8"), hashlib.sha256
    )
    return digest.hexdigest()


class CallbackTokens:
    """Signed, URL-safe tokens naming the task a per-task callback URL belongs to.

    The first key signs; every key verifies (rotation). itsdangerous expects the newest key
    last, so the list is reversed on the way in.
    """

    def __init__(self, secret_keys: Sequence[str]) -> None:
        if not secret_keys:
            raise ValueError("at least one secret key is required")
        self._keys = list(secret_keys)
        self._serializer = URLSafeSerializer(
            list(reversed(self._keys)), salt="aimusic-relay.callback-token"
        )

    def dumps(self, task_ref: str) -> str:
        token = self._serializer.dumps(task_ref)
        return token if isinstance(token, str) else token.decode("ascii")

    def loads(self, token: str) -> str:
        try:
            value = self._serializer.loads(token)
        except BadSignature:
            raise SignatureError("bad_token", "the callback URL's token is not valid") from None
        if not isinstance(value, str):
            raise SignatureError("bad_token", "the callback URL's token is not valid")
        return value

    def task_secrets(self, task_ref: str) -> list[str]:
        """Every secret this task's callbacks may be signed with, newest key first."""
        return [derive_task_secret(key, task_ref) for key in self._keys]
