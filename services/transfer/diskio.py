"""Writing a copy to disk cheaply: direct I/O from aligned buffers, hashed on the way, overlapped.

A buffered ``write`` costs a CPU copy into the page cache and then the kernel's writeback of every page (about
0.3-2.4 CPU-s per GiB on our machines, the largest cost at a destination after sha256). With ``O_DIRECT`` the
disk reads our buffer itself (~0.03 CPU-s per GiB). Direct I/O needs the buffer, the length and the file
offset aligned to the block size, and a chunk from Ray's object store sits at an arbitrary offset: so each
chunk is copied into an aligned buffer (numpy's copy, ~0.1 CPU-s per GiB, runs without the GIL, as do the
hashes after it; copying in small pieces to hash them from the CPU cache made one GIL hand-over per piece, and
sha256 is bound by compute, not memory). Disk writes run in background threads while the next chunks are
copied and hashed (a ring of buffers: see `ChunkWriter`). Where the filesystem refuses ``O_DIRECT`` (tmpfs on
older kernels, some FUSE), or at an unaligned tail, the writer falls back to buffered writes with early
writeback.
Durability is unchanged: the caller still fsyncs before the copy is placed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

try:
    import numpy as np
except ImportError:  # pragma: no cover - a node with Ray but no numpy: copies hold the GIL
    np = None  # type: ignore[assignment]

ALIGN = 4096  # covers 512-byte and 4 KiB logical blocks


def _load_sync_file_range() -> Any:
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
        fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        return fn
    except (OSError, AttributeError):
        return None


_SYNC_FILE_RANGE = _load_sync_file_range()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing this range to disk now (SYNC_FILE_RANGE_WRITE: does not wait), so the fsync at the
    end has little left to do instead of the whole file (Linux only; elsewhere fsync does it all)."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, length, 2)


def _set_direct(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off for ``fd``; False if the filesystem (or platform) refuses it."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return False
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, (flags | flag) if on else (flags & ~flag))
    except OSError:
        return False
    return True


def _write_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


class ChunkWriter:
    """Appends chunks to an open file descriptor; `put` feeds each chunk to hashers as it goes.

    A ring of ``depth`` aligned buffers lets the disk fall behind by that many chunks (its speed comes
    and goes) while chunks keep arriving; up to ``writers`` writes run at once (on our VMs 1, 2, 4 or 8
    made no measurable difference; 2 keeps a second request queued). Not thread-safe: one caller at a
    time (the sink takes chunks strictly in order). A failed background write is raised by the next
    `put` or by `flush`.
    """

    def __init__(self, fd: int, direct: bool = True, depth: int = 4, writers: int = 2) -> None:
        self.fd = fd
        self.offset = 0
        self.direct = direct and _set_direct(fd, True)
        self.depth, self.writers = max(2, depth), max(1, writers)
        self._bufs: list[mmap.mmap | None] = [None] * self.depth
        self._pending: list[Future[None] | None] = [None] * self.depth
        self._turn = 0
        self._pool: ThreadPoolExecutor | None = None

    def put(self, view: memoryview, hashers: Sequence[Any], check: Any = None) -> None:
        """Feed ``view`` to each hasher (``update``), call ``check()`` (it raises to refuse the chunk
        before anything is written), then write the chunk at the end of the file."""
        n = len(view)
        if not self.direct or self.offset % ALIGN or n % ALIGN:
            # Buffered (no direct I/O here, or the file's unaligned last chunk): after every write
            # already queued, since switching the descriptor off direct I/O affects them all.
            self._wait_all()
            if self.direct:
                _set_direct(self.fd, False)
                self.direct = False
            for h in hashers:
                h.update(view)
            if check is not None:
                check()
            self._write_buffered(view)
            return
        k = self._turn % self.depth
        self._wait(k)  # its buffer's previous write is done
        buf = self._bufs[k]
        if buf is None or len(buf) < n:
            buf = self._bufs[k] = mmap.mmap(-1, max(n, ALIGN))  # page-aligned
        dst = memoryview(buf)
        if np is not None:
            np.copyto(np.frombuffer(buf, np.uint8, n), np.frombuffer(view, np.uint8))  # without the GIL
        else:
            dst[:n] = view
        for h in hashers:
            h.update(dst[:n])
        if check is not None:
            check()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.writers, thread_name_prefix="castray-write")
        self._pending[k] = self._pool.submit(self._write_direct, dst[:n], self.offset)
        self.offset += n
        self._turn += 1

    def flush(self) -> None:
        """Wait until every chunk given to `put` is written (raises a failed write's error)."""
        self._wait_all()

    def close(self) -> None:
        """Stop the background threads (after their current writes); the caller closes the descriptor."""
        for k in range(self.depth):
            with contextlib.suppress(Exception):
                self._wait(k)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._bufs = [None] * self.depth

    def _wait(self, k: int) -> None:
        fut, self._pending[k] = self._pending[k], None
        if fut is not None:
            fut.result()

    def _wait_all(self) -> None:
        for i in range(self._turn, self._turn + self.depth):  # oldest first
            self._wait(i % self.depth)

    def _write_direct(self, view: memoryview, offset: int) -> None:
        try:
            _write_all(self.fd, view, offset)
        except OSError as e:
            if e.errno != errno.EINVAL:  # EINVAL: this file refuses direct I/O after all
                raise
            self.direct = False
            _set_direct(self.fd, False)
            _write_all(self.fd, view, offset)

    def _write_buffered(self, view: memoryview) -> None:
        _write_all(self.fd, view, self.offset)
        start_writeback(self.fd, self.offset, len(view))
        self.offset += len(view)
