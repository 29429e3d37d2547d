"""Is this request really from Slack, or from Discord? Checked on the raw body before anything
is parsed, so an unsigned request can do nothing but read a 401.

Both checks are the platforms' own libraries (slack-sdk's verifier, PyNaCl's Ed25519), not a
copy of them: Slack's `v0` HMAC with its ±5 minute window, Discord's signature over the
timestamp and the body (Discord itself sends badly signed requests to test this), held to the
same ±5 minutes as Slack's, which Discord's own check leaves to the receiver.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from slack_sdk.signature import SignatureVerifier

from receiver.errors import SignatureError

__all__ = ["verify_discord", "verify_slack"]

SLACK_SIGNATURE = "x-slack-signature"
SLACK_TIMESTAMP = "x-slack-request-timestamp"
DISCORD_SIGNATURE = "x-signature-ed25519"
DISCORD_TIMESTAMP = "x-signature-timestamp"
MAX_AGE_S = 300
"""How far a Discord `X-Signature-Timestamp` may be from now (as Slack's ±5 minutes): a signed
interaction recorded and sent again later would otherwise make (and charge) the song again."""


def verify_slack(signing_secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """Raise `SignatureError` unless the app's signing secret signed `body` within 5 minutes."""
    signature, timestamp = headers.get(SLACK_SIGNATURE), headers.get(SLACK_TIMESTAMP)
    if not signature or not timestamp:
        raise SignatureError(
            "missing",
            "send X-Slack-Signature and X-Slack-Request-Timestamp (Slack signs every "
            "request with the app's signing secret)",
        )
    try:
        valid = SignatureVerifier(signing_secret).is_valid(body, timestamp, signature)
    except (ValueError, UnicodeDecodeError):  # a timestamp that is not a number, a body not text
        valid = False
    if not valid:
        raise SignatureError(
            "mismatch",
            "X-Slack-Signature does not match the signing secret, or "
            "X-Slack-Request-Timestamp is more than 5 minutes away",
        )


def verify_discord(
    public_key: str, headers: Mapping[str, str], body: bytes, now: float | None = None
) -> None:
    """Raise `SignatureError` unless the application's key signed timestamp + `body`, and the
    timestamp (Discord's, once the signature holds) is within `MAX_AGE_S` of `now`."""
    signature, timestamp = headers.get(DISCORD_SIGNATURE), headers.get(DISCORD_TIMESTAMP)
    if not signature or not timestamp:
        raise SignatureError(
            "missing",
            "send X-Signature-Ed25519 and X-Signature-Timestamp (Discord signs every "
            "interaction with the application's key)",
        )
    try:
        VerifyKey(bytes.fromhex(public_key)).verify(
            timestamp.encode() + body, bytes.fromhex(signature)
        )
    except (BadSignatureError, ValueError, TypeError):  # wrong, not hex, or not 64 bytes long
        raise SignatureError(
            "mismatch", "X-Signature-Ed25519 is not the application's signature of this request"
        ) from None
    try:
        age = abs((time.time() if now is None else now) - float(timestamp))
    except ValueError:
        age = float("inf")
    if not age <= MAX_AGE_S:
        raise SignatureError(
            "stale", f"X-Signature-Timestamp is more than {MAX_AGE_S // 60} minutes away"
        )
