"""Callback signatures, callback tokens and per-task secrets."""

from __future__ import annotations

import time

import pytest
from starlette.datastructures import Headers

from receiver.errors import SignatureError
from receiver.signing import CallbackTokens, derive_task_secret, sign_callback, verify_callback


def _headers(secret: str, body: bytes, ts: int) -> Headers:
    return Headers(
        {"X-Webhook-Timestamp": str(ts), "X-Webhook-Signature": sign_callback(secret, ts, body)}
    )


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    """The signature matches an HMAC computed independently over `ts.body`."""
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign_callback("k", 1700000000, b"{}") == "sha256=" + expected


def test_any_rotated_secret_verifies() -> None:
    """Both the new and the old secret verify; an unrelated one does not."""
    now = int(time.time())
    for secret in ("new", "old"):
        verify_callback(["new", "old"], _headers(secret, b"{}", now), b"{}", now=now)
    with pytest.raises(SignatureError) as caught:
        verify_callback(["new", "old"], _headers("other", b"{}", now), b"{}", now=now)
    assert caught.value.reason == "bad_signature"


@pytest.mark.parametrize("skew", [-301, 301])
def test_timestamp_outside_window_is_refused(skew: int) -> None:
    """A correct signature more than 300 s away from our clock is a replay: refused."""
    now = int(time.time())
    with pytest.raises(SignatureError) as caught:
        verify_callback(["s"], _headers("s", b"{}", now + skew), b"{}", now=now)
    assert caught.value.reason == "stale_timestamp"


def test_signature_covers_every_byte() -> None:
    """Changing one byte of the body (even whitespace) breaks the signature."""
    now = int(time.time())
    headers = _headers("s", b'{"a": 1}', now)
    with pytest.raises(SignatureError):
        verify_callback(["s"], headers, b'{"a":  1}', now=now)


def test_tokens_round_trip_and_rotate() -> None:
    """A token made with an old key still loads after a new key is put first."""
    old = CallbackTokens(["key-old"]).dumps("task-1")
    rotated = CallbackTokens(["key-new", "key-old"])
    assert rotated.loads(old) == "task-1"
    assert rotated.loads(rotated.dumps("task-2")) == "task-2"
    with pytest.raises(SignatureError):
        CallbackTokens(["key-new"]).loads(old)


def test_task_secrets_differ_per_task_and_per_key() -> None:
    """Each task has its own secret; it is reproducible from the key alone."""
    assert derive_task_secret("k", "a") == derive_task_secret("k", "a")
    assert derive_task_secret("k", "a") != derive_task_secret("k", "b")
    assert derive_task_secret("k", "a") != derive_task_secret("k2", "a")
    assert CallbackTokens(["k", "k2"]).task_secrets("a") == [
        derive_task_secret("k", "a"),
        derive_task_secret("k2", "a"),
    ]
