"""Generated files of an exact size (the original CastRay's file generator, streamed).

`write_generated` is blocking (call it in a thread): it writes chunk by chunk to a temporary file next
to the destination, fsyncs it and renames it into place, so a partial file is never visible at ``path``
and the whole file is never in memory. Content kinds: ``random`` (PRNG bytes), ``text`` (a numbered
English line, repeated, as the original wrote), ``pattern`` (``"0123456789ABCDEF" * 64``, repeated).
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

Content = Literal["random", "text", "pattern"]
CONTENT_TYPES: tuple[Content, ...] = ("random", "text", "pattern")
DEFAULT_CHUNK = 4 * 1024 * 1024

PATTERN_UNIT = b"0123456789ABCDEF" * 64
TEXT_LINE = "Line {n:08d}: The quick brown fox jumps over the lazy dog. CastRay sample data.\n"


def _random_chunks(size: int, chunk: int) -> Iterator[bytes]:
    # random.randbytes (Mersenne Twister) is several times faster than os.urandom for bulk data and
    # test payloads need no cryptographic quality; seeded from the OS so each file differs.
    rng = random.Random(os.urandom(16))
    left = size
    while left > 0:
        n = min(chunk, left)
        yield rng.randbytes(n)
        left -= n


def _repeat_chunks(unit: bytes, size: int, chunk: int) -> Iterator[bytes]:
    # One buffer a whole number of units long, sliced for the last chunk: the unit stays aligned
    # across chunk boundaries because every full chunk is a multiple of the unit.
    per = max(1, chunk // len(unit))
    block = unit * per
    left = size
    while left > 0:
        n = min(len(block), left)
        yield block[:n] if n < len(block) else block
        left -= n


def _text_chunks(size: int, chunk: int) -> Iterator[bytes]:
    # Numbered lines: line n is TEXT_LINE with n; the file is cut at exactly ``size`` bytes. The part of
    # a line past a chunk's end is carried into the next chunk, so the content is independent of chunk.
    shortest = len(TEXT_LINE.format(n=1))
    left, n, carry = size, 1, b""
    while left > 0:
        target = min(chunk, left)
        count = max(0, target - len(carry)) // shortest + 1  # lines only get longer: enough
        data = carry + "".join([TEXT_LINE.format(n=i) for i in range(n, n + count)]).encode()
        n += count
        data, carry = data[:target], data[target:]
        yield data
        left -= len(data)


def chunks(size: int, content: Content = "random", *, chunk: int = DEFAULT_CHUNK) -> Iterator[bytes]:
    """The content of a generated file of ``size`` bytes, in pieces of at most ``chunk`` bytes."""
    if size < 0:
        raise ValueError("size must not be negative")
    if chunk <= 0:
        raise ValueError("chunk must be positive")
    if content == "random":
        return _random_chunks(size, chunk)
    if content == "text":
        return _text_chunks(size, chunk)
    if content == "pattern":
        return _repeat_chunks(PATTERN_UNIT, size, chunk)
    raise ValueError(f"unknown content type {content!r} (use one of {', '.join(CONTENT_TYPES)})")


def write_generated(path: str | os.PathLike[str], size: int, content: Content = "random", *,
                    chunk: int = DEFAULT_CHUNK, fsync: bool = True) -> str:
    """Write exactly ``size`` bytes of ``content`` to ``path`` (atomically); return its sha256 hex.

    Blocking. The parent directory must exist. An existing file at ``path`` is replaced.
    """
    source = chunks(size, content, chunk=chunk)  # validates before touching the disk
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.part")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as f:
            for data in source:
                digest.update(data)
                f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest.hexdigest()
