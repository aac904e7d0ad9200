"""The sha256 of a file, read in chunks: how the gateway states an upload's or a generated file's hash,
and how a transfer destination checks a file it placed before (a retry finding its own earlier copy).
Blocking: call it in a thread (hashlib and file reads release the GIL on large chunks)."""

from __future__ import annotations

import hashlib
import os

CHUNK = 8 * 1024 * 1024


def file_digest(file: str | os.PathLike[str] | int, chunk: int = CHUNK) -> tuple[int, str]:
    """Size and sha256 hex of ``file``: a path, or an open descriptor (which this closes)."""
    digest, size = hashlib.sha256(), 0
    with open(file, "rb", buffering=0) as f:
        while data := f.read(chunk):
            digest.update(data)
            size += len(data)
    return size, digest.hexdigest()
