"""The destination's chunk writer: direct I/O where the filesystem allows, buffered otherwise; every
byte lands at its offset and is hashed, whatever the chunk sizes and alignment."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from castray.transfer.diskio import ALIGN, ChunkWriter


def _chunks(sizes: list[int]) -> list[memoryview]:
    rng = np.random.default_rng(7)
    out = []
    for n in sizes:
        # Offset by 3 bytes inside a bigger array: a view as unaligned as one from Ray's object store.
        a = rng.integers(0, 256, n + 3, dtype=np.uint8)
        out.append(a[3:].data.cast("B"))
    return out


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("sizes", [
    [4 * 1024 * 1024, 4 * 1024 * 1024, 1234567],  # aligned chunks then an unaligned tail
    [3 * ALIGN, 5 * ALIGN + 17],
    [1000],  # smaller than a block
    [ALIGN + 1, ALIGN],  # unaligned from the first chunk on: the rest goes buffered
])
def test_writer_writes_every_byte_and_hashes_it(tmp_path: Path, direct: bool, sizes: list[int]) -> None:
    chunks = _chunks(sizes)
    path = tmp_path / "out.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    sha, checked = hashlib.sha256(), []
    writer = ChunkWriter(fd, direct=direct)
    try:
        for c in chunks:
            writer.put(c, [sha], lambda: checked.append(sha.copy().hexdigest()))
        writer.flush()
    finally:
        writer.close()
        os.close(fd)
    expected = b"".join(bytes(c) for c in chunks)
    assert path.read_bytes() == expected
    assert sha.hexdigest() == hashlib.sha256(expected).hexdigest()
    # check() saw the running digest after each chunk, before its write
    running, want = hashlib.sha256(), []
    for c in chunks:
        running.update(c)
        want.append(running.hexdigest())
    assert checked == want


@pytest.mark.parametrize(("depth", "writers"), [(2, 1), (3, 3), (8, 2)])
def test_a_ring_of_buffers_keeps_every_chunk_in_place(tmp_path: Path, depth: int, writers: int) -> None:
    """More chunks than buffers, several writes at once: each chunk still lands at its own offset (a
    buffer reused before its write finished would put the wrong bytes there)."""
    chunks = _chunks([64 * ALIGN] * 13 + [777])
    path = tmp_path / "out.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    writer = ChunkWriter(fd, depth=depth, writers=writers)
    try:
        for c in chunks:
            writer.put(c, [])
        writer.flush()
    finally:
        writer.close()
        os.close(fd)
    assert path.read_bytes() == b"".join(bytes(c) for c in chunks)


def test_a_refused_chunk_is_not_written(tmp_path: Path) -> None:
    chunks = _chunks([2 * ALIGN, 2 * ALIGN])
    path = tmp_path / "out.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    writer = ChunkWriter(fd)
    sha = hashlib.sha256()

    def refuse() -> None:
        raise ValueError("bad chunk")

    try:
        writer.put(chunks[0], [sha])
        with pytest.raises(ValueError, match="bad chunk"):
            writer.put(chunks[1], [sha], refuse)
        writer.flush()
    finally:
        writer.close()
        os.close(fd)
    assert path.read_bytes() == bytes(chunks[0])


def test_a_failed_write_is_raised(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)  # not writable: every write fails (EBADF)
    writer = ChunkWriter(fd)
    try:
        with pytest.raises(OSError):
            writer.put(_chunks([2 * ALIGN])[0], [hashlib.sha256()])
            writer.flush()
    finally:
        writer.close()
        os.close(fd)
