"""Real, small media files for sandbox clips, synthesised with the stdlib only.

Handlers downstream tag, transcode and post these files, so they must be genuine WAV and PNG
files rather than placeholder bytes. Both derive from a hash of the prompt: the same prompt
always gives the same song and cover, which keeps demos and tests reproducible.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import struct
import sys
import wave
import zlib
from array import array

__all__ = ["SAMPLE_RATE", "png_cover", "wav_song"]

SAMPLE_RATE = 22_050
_PENTATONIC = (0, 2, 4, 7, 9)  # semitones above the root; any sequence of these sounds tuneful
_NOTES = 6
_AMPLITUDE = 0.3 * 32767
_RAMP_S = 0.01  # fade in/out per note, so note boundaries do not click
_COVER_SIZE = 256


def _digest(prompt: str) -> bytes:
    return hashlib.sha256(prompt.encode("utf-8")).digest()


@functools.lru_cache(maxsize=32)
def wav_song(prompt: str, seconds: float) -> bytes:
    """A mono 16-bit 22050 Hz WAV of a few notes whose pitches come from the prompt's hash.

    Cached because a handler may fetch the same clip several times; the cache is bounded and
    holds pure results, so it is not configuration.
    """
    digest = _digest(prompt)
    total = max(1, round(seconds * SAMPLE_RATE))
    per_note = max(1, total // _NOTES)
    ramp = max(1, int(_RAMP_S * SAMPLE_RATE))
    samples = array("h")
    for index in range(_NOTES):
        byte = digest[index]
        midi = 57 + _PENTATONIC[byte % 5] + 12 * ((byte // 5) % 2)
        freq = 440.0 * 2 ** ((midi - 69) / 12)
        length = per_note if index < _NOTES - 1 else total - per_note * (_NOTES - 1)
        step = 2 * math.pi * freq / SAMPLE_RATE
        for n in range(length):
            envelope = min(1.0, n / ramp, (length - n) / ramp)
            samples.append(int(_AMPLITUDE * envelope * math.sin(step * n)))
    if samples.itemsize != 2:  # pragma: no cover - "h" is 16-bit on every supported platform
        raise RuntimeError("array('h') is not 16-bit here")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        if sys.byteorder == "big":  # pragma: no cover - WAV is little-endian, array is native
            samples.byteswap()
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


@functools.lru_cache(maxsize=32)
def png_cover(prompt: str) -> bytes:
    """A 256x256 RGB PNG: a diagonal gradient between two colours taken from the prompt's hash."""
    digest = _digest(prompt)
    start, end = digest[8:11], digest[11:14]
    size = _COVER_SIZE
    span = 2 * (size - 1)
    # Every pixel on a diagonal has the same colour: compute the palette once per diagonal.
    palette = [
        bytes(start[c] + (end[c] - start[c]) * d // span for c in range(3)) for d in range(span + 1)
    ]
    rows = bytearray()
    for y in range(size):
        rows.append(0)  # filter type "None" for this scanline
        rows += b"".join(palette[x + y] for x in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(rows), 6))
        + _chunk(b"IEND", b"")
    )
