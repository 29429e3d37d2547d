"""Seal a Discord interaction token for the task label that carries it to the reply handler.

The token lets whoever holds it post as the app in that channel for 15 minutes, and a task's
labels show on the admin API, the dashboard, `--json` output and in database backups. So the
label holds the token encrypted and authenticated (PyNaCl's SecretBox) under a key derived
from RELAY_SECRET_KEY: only this relay can open it, and nothing else needs to hide it.

Pure functions; every key of a rotated RELAY_SECRET_KEY opens, the first one seals.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

__all__ = ["PREFIX", "seal", "unseal"]

PREFIX = "sealed:"
"""How a sealed label value starts, so a reader of the dashboard knows what it is looking at."""
_PERSON = b"discord-itoken"
"""BLAKE2b personalisation: the derived key is for this use only, never another's."""


def seal(token: str, keys: Sequence[str]) -> str:
    """`token` encrypted under the first key, as `sealed:<urlsafe base64>`."""
    if not keys:
        raise ValueError("sealing an interaction token needs RELAY_SECRET_KEY")
    box = SecretBox(_derive(keys[0]))
    return PREFIX + base64.urlsafe_b64encode(bytes(box.encrypt(token.encode()))).decode()


def unseal(value: str, keys: Sequence[str]) -> str | None:
    """The token `seal` wrote, or None when no key opens it (a rotated-out key, a forgery)."""
    if not value.startswith(PREFIX):
        return None
    try:
        raw = base64.urlsafe_b64decode(value.removeprefix(PREFIX).encode())
    except ValueError:
        return None
    for key in keys:
        try:
            return SecretBox(_derive(key)).decrypt(raw).decode()
        except (CryptoError, ValueError):
            continue
    return None


def _derive(secret: str) -> bytes:
    return hashlib.blake2b(secret.encode(), digest_size=SecretBox.KEY_SIZE, person=_PERSON).digest()
