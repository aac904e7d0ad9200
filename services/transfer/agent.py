"""The node agent: an async Ray actor pinned to one node, which reads a transfer's source there and writes
its copies there.

One agent per (driver, node), reused by every transfer: starting a Ray worker costs about a second, so it
is paid once. Calls for one transfer can start out of order (an async actor runs a call as soon as its
ObjectRef arguments arrive), so each source and sink takes chunks strictly by index (`Ordered`); a
waiting call holds no thread. Disk work and hashing run in threads (hashlib and file I/O release the GIL).

A copy is written under a temporary name, verified, and only then linked into place (`castray.transfer.sink`).
After every chunk the writer's running sha256 is compared with the reader's, so a bad chunk is caught at
once rather than at the end. A node-file source is opened beneath the files root one component at a time,
never through a symlink (`castray.shared.confined`), so the kernel keeps it there.

Shipped to nodes where only its own modules and the standard library may exist (`castray.transfer.shipping`):
so its calls take plain arguments and answer `TypedDict`s, never a pydantic model.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import io
import os
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any, Protocol, TypedDict

import ray

from castray.shared.confined import open_beneath, open_nofollow
from castray.shared.errors import ConfinementError
from castray.shared.filegen import Content, write_generated
from castray.transfer.direct_hop import Hop, HopStatus, Limits, SendEnd, Sender
from castray.transfer.errors import TransferError
from castray.transfer.sink import (
    CHUNK_DIGEST,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    Ordered,
    Placed,
    Sink,
    SinkSpec,
    open_sink,
)

# A node of someone else's cluster has Ray, but maybe not numpy or xxhash (Ray needs neither). Without them
# the agent still works, more slowly: chunks travel as bytearrays (one more copy out of the object store)
# and carry the running sha256 instead of a per-chunk xxh3. The driver picks that mode for a transfer as
# soon as one of its nodes lacks them (`NodeAgent.info` says), since both ends must agree.
try:
    import numpy as np
except ImportError:  # pragma: no cover - depends on the node
    np = None  # type: ignore[assignment]
try:
    import xxhash
except ImportError:  # pragma: no cover - depends on the node
    xxhash = None  # type: ignore[assignment]
FAST = np is not None and xxhash is not None

_PIECE = 512 * 1024
WATCH_PERIOD_S = 1.0  # how often an agent looks for abandoned copies (`NodeAgent._watch`)


class SourceEnd(TypedDict):
    """A source read to its end: its sha256 and how many bytes were read."""

    sha256: str
    bytes: int


class AgentInfo(TypedDict):
    hostname: str
    pid: int
    fast: bool  # numpy and xxhash here (`FAST`)
    ray_node_id: str
    ip: str  # the node's address: what a broadcast chain groups nodes by (hosts may share a hostname)


class SinkState(TypedDict):
    """Where a copy stands after `NodeAgent.rewind`: the next chunk it takes, in which epoch."""

    next: int
    epoch: int


class Readable(Protocol):
    """What a source reads from: an open file, or a stream such as an HTTP response."""

    def readinto(self, buffer: Any, /) -> int | None: ...

    def close(self) -> None: ...


class SourceFile(Ordered):
    """Reads a file in order. Each chunk goes with a digest its destinations check it against: the
    running sha256 of the file so far, or, when the file's sha256 is already known (an upload's record
    has it), a per-chunk xxh3-128 (``xxh3:<hex>``, ~0.05 CPU-s per GiB instead of sha256's ~0.85): the
    source then hashes nothing else, and each destination still checks the whole file's sha256 against
    the known one at the end.

    ``fast`` (every node of the transfer has numpy and xxhash): chunks are numpy arrays, which a
    destination reads straight from its object store; otherwise bytearrays, with the running sha256."""

    def __init__(self, file: Readable, size: int, known_sha: str | None = None, fast: bool = True,
                 remove: Path | None = None) -> None:
        """Read ``size`` bytes from ``file`` (a file, or a stream such as an HTTP response); ``remove``:
        a file to delete at `close`."""
        super().__init__()
        self.fast = fast and FAST
        if not self.fast:
            known_sha = None  # no xxh3 on some node: the source hashes the file itself
        self.file, self.size, self.known_sha, self.remove = file, size, known_sha, remove
        self.sha = hashlib.sha256()
        self.done = 0
        self.lock = threading.Lock()  # a direct chain's sender reads under it (`restart` waits for it)

    @classmethod
    def open(cls, path: Path, remove_after: bool, known_sha: str | None = None, fast: bool = True
             ) -> SourceFile:
        """Open ``path``, a path CastRay chose (its last component is never followed if a symlink)."""
        try:
            fd = open_nofollow(path)
        except ConfinementError as e:
            raise TransferError(f"source refused: {e}") from None
        return cls.from_fd(fd, known_sha, fast, path if remove_after else None)

    @classmethod
    def from_fd(cls, fd: int, known_sha: str | None = None, fast: bool = True, remove: Path | None = None
                ) -> SourceFile:
        """A source reading the open descriptor ``fd`` (it must be a regular file; closed by `close`)."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise TransferError("source is not a regular file")
        return cls(open(fd, "rb", buffering=0), st.st_size, known_sha, fast, remove)  # noqa: SIM115

    def read(self, length: int) -> tuple[Any, str]:
        buf: Any = np.empty(length, dtype=np.uint8) if self.fast else bytearray(length)
        view, got = memoryview(buf).cast("B"), 0
        hasher: Any = xxhash.xxh3_128() if self.known_sha is not None else self.sha
        while got < length:  # pieces the size of the CPU's cache, hashed while they are in it
            n = self.file.readinto(view[got:min(length, got + _PIECE)])
            if not n:
                raise TransferError(f"source file shrank while being read ({self.done + got} bytes)")
            hasher.update(view[got:got + n])
            got += n
        self.done += length
        if self.known_sha is not None:
            return buf, CHUNK_DIGEST + hasher.hexdigest()
        return buf, self.sha.copy().hexdigest()

    def restart(self, index: int, offset: int) -> int:
        """Read on from chunk ``index`` at byte ``offset`` (forwards or back): the direct chain's fallback
        re-reads what its copies miss (`castray.transfer.direct`). A file of this machine only (not a
        stream); with the running sha256 as digests, the file is hashed again up to ``offset``. Returns
        the bytes read so far (``offset``)."""
        if not isinstance(self.file, io.FileIO):
            raise TransferError("this source cannot be read again")
        with self.lock:
            self.file.seek(0)
            self.sha, self.done = hashlib.sha256(), 0
            if self.known_sha is not None:  # per-chunk digests: nothing to hash before it
                self.file.seek(offset)
                self.done = offset
            while self.done < offset:
                length = min(offset - self.done, 4 * 1024 * 1024)
                block = self.file.read(length)
                if not block:
                    raise TransferError(f"source file shrank while being read ({self.done} bytes)")
                self.sha.update(block)
                self.done += len(block)
            self.next, self.error = index, None
            return self.done

    def sha256(self) -> str:
        return self.known_sha if self.known_sha is not None else self.sha.hexdigest()

    def end(self) -> SourceEnd:
        return {"sha256": self.sha256(), "bytes": self.done}

    def close(self) -> None:
        self.file.close()
        if self.remove is not None:
            self.remove.unlink(missing_ok=True)


def open_node_file(root: str, path: str, known_sha: str | None = None, fast: bool = True) -> SourceFile:
    """A file of this node, ``path`` from the user: the kernel keeps it inside the files root ``root``."""
    try:
        fd = open_beneath(root, path, os.O_RDONLY)
    except ConfinementError as e:
        raise TransferError(f"bad source path: {e}") from None
    except (FileNotFoundError, NotADirectoryError):
        raise TransferError(f"source file not found on node: {path}") from None
    return SourceFile.from_fd(fd, known_sha, fast)


def open_generated(path: str, size: int, content: Content, known_sha: str | None = None, fast: bool = True
                   ) -> SourceFile:
    """A file generated at ``path`` (a path CastRay chose), deleted when it is closed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_generated(target, size, content, fsync=False)
    return SourceFile.open(target, True, known_sha, fast)


async def write_chunk(sink: Sink, index: int, data: Any, digest: str, epoch: int) -> int:
    """Write chunk ``index`` of ``sink``'s copy, in its turn (the Ray paths' and the direct chain's one
    way): digest-checked in a thread, the idle watchdog touched; the bytes written so far."""
    sink.touch()
    await sink.turn(index, epoch)
    try:
        done = await asyncio.to_thread(sink.write, data, digest)
    except BaseException as e:
        await sink.advance(str(e))
        raise
    sink.touch()
    await sink.advance()
    return done


def sink_hop(sink: Sink, secret: bytes, limits: Limits) -> Hop:
    """A direct chain's hop (`castray.transfer.direct_hop`) writing into ``sink`` as `write_chunk` does,
    in the copy's current epoch."""

    async def write(index: int, data: Any, digest: str) -> int:
        return await write_chunk(sink, index, data, digest, sink.epoch)

    return Hop(secret, limits, write, lambda: (sink.done, sink.next))


class NodeAgent:
    """Reads sources and writes copies on its node (an async actor: create it with `agent_options`)."""

    def __init__(self) -> None:
        self.sources: dict[str, SourceFile] = {}
        self.sinks: dict[str, Sink] = {}
        self.hops: dict[str, Hop] = {}  # a direct chain's ends, by sink key (`castray.transfer.direct`)
        self.senders: dict[str, Sender] = {}  # a direct chain's sends, by source key
        self.watchdog: asyncio.Task[None] | None = None
        # The worker's ~10^5 objects from start-up never die: out of the collector's reach, its full
        # passes (triggered by each chunk's task objects) stop walking them.
        gc.freeze()

    async def info(self) -> AgentInfo:
        return {"hostname": socket.gethostname(), "pid": os.getpid(), "fast": FAST,
                "ray_node_id": ray.get_runtime_context().get_node_id(),
                "ip": str(ray.util.get_node_ip_address())}  # type: ignore[no-untyped-call]

    # --- source -----------------------------------------------------------------------------------
    async def open_file(self, key: str, root: str, path: str, known_sha: str | None, fast: bool) -> int:
        """Open a file of this node as a transfer's source; its size. With ``known_sha`` (the file's
        sha256, known from its upload) the source is not hashed again, and ``fast`` says every node of the
        transfer can take numpy chunks with xxh3 digests (see `SourceFile`)."""
        return self._opened(key, await asyncio.to_thread(open_node_file, root, path, known_sha, fast))

    async def open_generated(self, key: str, path: str, size: int, content: Content, known_sha: str | None,
                             fast: bool) -> int:
        """Generate a file here and open it as a transfer's source; its size."""
        source = await asyncio.to_thread(open_generated, path, size, content, known_sha, fast)
        return self._opened(key, source)

    def _opened(self, key: str, source: SourceFile) -> int:
        self.sources[key] = source
        return source.size

    @ray.method(num_returns=2)
    async def read(self, key: str, index: int, length: int) -> tuple[Any, str]:
        source = self.sources[key]
        await source.turn(index)
        try:
            out = await asyncio.to_thread(source.read, length)
        except BaseException as e:
            await source.advance(str(e))
            raise
        await source.advance()
        return out

    async def close_source(self, key: str) -> SourceEnd | None:
        source = self.sources.pop(key, None)
        if source is None:
            return None
        await asyncio.to_thread(source.close)
        return source.end()

    # --- sinks ------------------------------------------------------------------------------------
    async def open_sink(self, key: str, spec: SinkSpec) -> None:
        self.sinks[key] = await asyncio.to_thread(open_sink, spec)
        if spec.idle_timeout > 0 and (self.watchdog is None or self.watchdog.done()):
            self.watchdog = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        """Abort the copies nobody speaks to any more (`Sink.idle`): their driver died, or this host was
        cut off from it, and no one else could remove their temporary files. Ends with the last sink."""
        while self.sinks:
            await asyncio.sleep(WATCH_PERIOD_S)
            now = time.monotonic()
            for key, sink in list(self.sinks.items()):
                if sink.idle(now) and self.sinks.get(key) is sink:
                    del self.sinks[key]
                    await sink.advance(f"nothing arrived for {sink.idle_timeout:.0f} s: copy abandoned")
                    await asyncio.to_thread(sink.abort)

    async def write(self, key: str, index: int, data: Any, digest: str, epoch: int = 0) -> int:
        """Write chunk ``index`` of a copy (in order); the bytes written so far."""
        return await write_chunk(self._sink(key), index, data, digest, epoch)

    async def forward(self, data: Any) -> Any:
        """The chunk again, as a new object in this node's store (owned by the driver), which the next node
        of a broadcast chain pulls from here; it runs beside `write` of the same chunk, not after it."""
        return data

    async def rewind(self, key: str) -> SinkState:
        """A new epoch for a copy whose chain is re-issued: its waiting calls are refused, and the chunk
        it takes next is unchanged (a call whose input was lost never ran). Raises the copy's error."""
        sink = self._sink(key)
        sink.touch()
        epoch = await sink.rewind()
        if sink.error is not None:
            raise TransferError(sink.error)
        return {"next": sink.next, "epoch": epoch}

    def _sink(self, key: str) -> Sink:
        sink = self.sinks.get(key)
        if sink is None:  # aborted, by its driver or by `_watch`
            raise TransferError("copy aborted on its node (nothing arrived for too long)")
        return sink

    # --- a direct chain (`castray.transfer.direct`, `castray.transfer.direct_hop`) ----------------
    async def direct_listen(self, key: str, secret: bytes, size: int, chunk_bytes: int, timeout: float,
                            deadline: float) -> tuple[str, int]:
        """Listen on this node's address for the one upstream peer of copy ``key`` (see `Hop`); the
        address and port. What arrives is written as `write` writes, in the copy's current epoch."""
        sink = self._sink(key)
        sink.touch()
        await self._close_hop(key)
        hop = sink_hop(sink, secret, Limits(size, chunk_bytes, timeout))
        ip = str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
        port = await hop.listen(ip, deadline)
        self.hops[key] = hop
        return ip, port

    async def direct_connect(self, key: str, host: str, port: int) -> None:
        """Connect copy ``key``'s hop to the next one, at ``host:port``."""
        await self._hop(key).connect(host, port)

    async def direct_status(self, key: str) -> HopStatus:
        sink = self._sink(key)
        sink.touch()
        return self._hop(key).status()

    def _hop(self, key: str) -> Hop:
        hop = self.hops.get(key)
        if hop is None:
            raise TransferError("no direct chain for this copy (closed)")
        return hop

    async def direct_send(self, key: str, host: str, port: int, secret: bytes, chunk_bytes: int,
                          timeout: float, rate_limit: int) -> SendEnd:
        """Send source ``key`` to the first hop at ``host:port``, whole, from where it stands."""
        source = self.sources[key]
        limits = Limits(source.size, chunk_bytes, timeout)
        if source.done != 0:
            raise TransferError("a direct send starts at the source's first byte")
        sender = Sender(source.read, source.lock, secret, limits, rate_limit)
        self.senders[key] = sender
        try:
            return await sender.send(host, port)
        finally:
            if self.senders.get(key) is sender:
                del self.senders[key]

    async def direct_close(self, key: str) -> None:
        """End copy ``key``'s hop or source ``key``'s send (the chunks received are still written)."""
        await self._close_hop(key)
        sender = self.senders.pop(key, None)
        if sender is not None:
            await sender.stop()

    async def _close_hop(self, key: str) -> None:
        hop = self.hops.pop(key, None)
        if hop is not None:
            await hop.close()

    async def rewind_source(self, key: str, index: int, offset: int) -> int:
        """Read source ``key`` on from chunk ``index`` at byte ``offset`` (`SourceFile.restart`)."""
        sender = self.senders.pop(key, None)
        if sender is not None:
            await sender.stop()
        return await asyncio.to_thread(self.sources[key].restart, index, offset)

    async def finish(self, key: str, sha256: str) -> Placed:
        await self._close_hop(key)
        sink = self._sink(key)
        del self.sinks[key]
        try:
            return await asyncio.to_thread(sink.finish, sha256)
        finally:
            await asyncio.to_thread(sink.abort)  # removes the temp file if it is still there

    async def abort_sink(self, key: str) -> None:
        """Drop a transfer's copy here, removing its temporary file."""
        await self._close_hop(key)
        sink = self.sinks.pop(key, None)
        if sink is not None:
            await sink.advance("cancelled")
            await asyncio.to_thread(sink.abort)

    async def remove_temp(self, path: str) -> bool:
        """Remove a temp file another (dead) node left on this host; only our own temp names."""
        name = os.path.basename(path)
        if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
            return False
        try:
            await asyncio.to_thread(os.unlink, path)
        except FileNotFoundError:
            return False
        return True


def agent_options(ray_node_id: str) -> dict[str, Any]:
    """Hard-pinned to the node, no CPU reserved (it mostly waits on disk and network), never restarted:
    a dead node must show up as a failed destination, not as a copy quietly resumed elsewhere."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=ray_node_id, soft=False),
            "num_cpus": 0, "max_restarts": 0, "max_task_retries": 0, "max_concurrency": 1000}
