"""One node's part of a direct broadcast chain (`castray.transfer.direct`): plain TCP between node agents.

A destination's agent listens (`Hop.listen`) on its node's own address, on an ephemeral port, for ONE
connection of one transfer. The peer must send the transfer's secret first (``SECRET_BYTES``, compared in
constant time, within `AUTH_TIMEOUT`); a wrong, short or slow one is closed and the listener keeps
waiting, until the first good peer or its deadline. Then frames, one per chunk, strictly in order::

    index (u64) | length (u32) | digest length (u16) | digest (ascii) | length bytes

Every field is checked against the plan (`Limits`): the index is the next one, the length is exactly that
chunk's (never more than ``chunk_bytes``, never past ``size``), the digest is short. A frame that is not
is the end of the stream. The bytes go downstream (`Hop.connect`) as they arrive, before the chunk is
whole, and a whole chunk is written through the agent's own write path (ordered by `Sink.turn`, checked
against its digest, touching the idle watchdog), in another task: the network runs ahead of the disk by
at most `DEPTH` chunks, and drain() on the downstream socket holds the upstream back. Every read and
drain has the plan's chunk deadline.

A source's agent sends (`send`): the same chunks and digests the Ray path reads (`SourceFile.read`).

Shipped to nodes with the agent (`castray.transfer.shipping`): standard library only, and no Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from castray.transfer.errors import TransferError

SECRET_BYTES = 32
AUTH_TIMEOUT = 10.0  # seconds a peer has to send the secret once connected
MAX_KNOCKING = 8  # connections at once that have not sent the secret yet; more are closed at once
HEADER = struct.Struct("!QIH")  # chunk index, length, digest length
MAX_DIGEST = 128  # "xxh3:" + 32 hex, or a sha256's 64 hex
PIECE = 256 * 1024  # the most read from the socket at once
DEPTH = 2  # whole chunks received and not yet written
HIGH_WATER = 1024 * 1024  # bytes queued on the downstream socket before drain() waits

HopState = Literal["listening", "receiving", "done", "failed", "broken"]


class HopStatus(TypedDict):
    """What a destination's hop says to the driver (`NodeAgent.direct_status`)."""

    state: HopState  # failed: its copy failed (the sink's error); broken: its upstream was lost
    written: int  # bytes of its copy written
    next: int  # the next chunk its copy takes
    error: str | None
    forward: str | None  # why forwarding downstream stopped, if it did


class SendEnd(TypedDict):
    """A source's send to the first hop: bytes sent, and why it stopped early (None: it sent them all)."""

    sent: int
    error: str | None


@dataclass(frozen=True)
class Limits:
    """What a peer may send: ``size`` bytes in chunks of ``chunk_bytes``; ``timeout`` for each read and
    each drain."""

    size: int
    chunk_bytes: int
    timeout: float

    @property
    def count(self) -> int:
        return -(-self.size // self.chunk_bytes)

    def length(self, index: int) -> int:
        return min(self.chunk_bytes, self.size - index * self.chunk_bytes)


class HopError(TransferError):
    """The stream from upstream is unusable (closed, too slow, a bad frame)."""


Write = Callable[[int, Any, str], Awaitable[int]]  # index, data, digest -> bytes of the copy written


async def _within(step: Awaitable[Any], timeout: float, what: str) -> Any:
    """``step``'s result, or `HopError` if it fails or takes longer than ``timeout`` (a timer, no task)."""
    try:
        async with asyncio.timeout(timeout):
            return await step
    except TimeoutError:
        raise HopError(f"{what}: nothing for {timeout:.0f} s") from None
    except asyncio.IncompleteReadError:
        raise HopError(f"{what}: the peer closed the stream") from None
    except OSError as e:
        raise HopError(f"{what}: {e}") from None


class Hop:
    """A destination's end of the direct chain, for one copy (its agent's sink)."""

    def __init__(self, secret: bytes, limits: Limits, write: Write, written: Callable[[], tuple[int, int]]
                 ) -> None:
        """``write`` writes a whole chunk through the sink's path; ``written`` says (bytes, next chunk)."""
        self.secret, self.limits, self.write, self.written = secret, limits, write, written
        self.state: HopState = "listening"
        self.error: str | None = None
        self.forward_error: str | None = None
        self.server: asyncio.Server | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.downstream: asyncio.StreamWriter | None = None
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.receiving: asyncio.Task[None] | None = None
        self.queue: asyncio.Queue[tuple[int, bytearray, str] | None] = asyncio.Queue()
        self.room = asyncio.Semaphore(DEPTH)
        self.refused = 0  # connections closed before or at the secret
        self.knocking = 0  # connections waiting to send the secret
        self.ended = asyncio.Event()  # its stream is over, and every chunk received was written (or failed)

    async def listen(self, host: str, deadline: float) -> int:
        """Listen on ``host`` (the node's own address), an ephemeral port, until one peer has sent the
        secret or ``deadline`` seconds passed; the port."""
        self.server = await asyncio.start_server(self._accept, host, 0, backlog=8, limit=2 * PIECE)
        self.expiry = asyncio.get_running_loop().call_later(deadline, self._expire)
        return int(self.server.sockets[0].getsockname()[1])

    def _expire(self) -> None:
        if self.state == "listening":
            self.state, self.error = "broken", "no upstream peer connected in time"
        self._stop_listening()

    def _stop_listening(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        if self.server is not None:
            self.server.close()

    async def connect(self, host: str, port: int) -> None:
        """The next hop: connect and authenticate; the bytes go there as they arrive."""
        reader, writer = await _within(asyncio.open_connection(host, port), self.limits.timeout,
                                       f"connecting to {host}:{port}")
        writer.transport.set_write_buffer_limits(high=HIGH_WATER)
        writer.write(self.secret)
        await _within(writer.drain(), self.limits.timeout, "sending the secret downstream")
        self.downstream = writer

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.state != "listening" or self.knocking >= MAX_KNOCKING:
            self.refused += 1
            writer.transport.abort()
            return
        self.knocking += 1
        try:
            token = await asyncio.wait_for(reader.readexactly(SECRET_BYTES), AUTH_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError, OSError):
            token = b""
        finally:
            self.knocking -= 1
        if self.state != "listening" or not hmac.compare_digest(token, self.secret):
            self.refused += 1
            writer.transport.abort()
            return
        self.state, self.upstream = "receiving", writer
        self._stop_listening()
        self.receiving = self._spawn(self._receive(reader))
        self._spawn(self._write_all())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        limits, timeout = self.limits, self.limits.timeout
        try:
            for index in range(limits.count):
                await self.room.acquire()
                head = await _within(reader.readexactly(HEADER.size), timeout, f"chunk {index}")
                got_index, length, digest_len = HEADER.unpack(head)
                if got_index != index or length != limits.length(index) or digest_len > MAX_DIGEST:
                    raise HopError(f"bad frame: chunk {got_index} of {length} bytes where chunk {index} "
                                   f"of {limits.length(index)} was due")
                raw = await _within(reader.readexactly(digest_len), timeout, f"chunk {index}")
                digest = raw.decode("ascii", errors="replace")
                await self._forward(head + raw)
                buf, got = bytearray(length), 0
                view = memoryview(buf)
                while got < length:
                    piece = await _within(reader.read(min(PIECE, length - got)), timeout, f"chunk {index}")
                    if not piece:
                        raise HopError(f"chunk {index}: the peer closed the stream")
                    view[got:got + len(piece)] = piece
                    got += len(piece)
                    await self._forward(piece)
                self.queue.put_nowait((index, buf, digest))
            if self.downstream is not None and self.forward_error is None:
                self.downstream.close()  # the whole file went on: an orderly end
        except HopError as e:
            if self.state == "receiving":
                self.state, self.error = "broken", f"upstream lost: {e}"
            self._close_downstream()
        finally:
            self.queue.put_nowait(None)
            if self.upstream is not None:
                self.upstream.transport.abort()

    async def _forward(self, data: bytes) -> None:
        down = self.downstream
        if down is None or self.forward_error is not None:
            return
        try:
            down.write(data)
            await _within(down.drain(), self.limits.timeout, "forwarding downstream")
        except HopError as e:
            self.forward_error = str(e)
            self._close_downstream()

    def _close_downstream(self) -> None:
        if self.downstream is not None:
            self.downstream.transport.abort()

    async def _write_all(self) -> None:
        """Write whole chunks through the sink's path as they come; a failed write fails the copy."""
        while (item := await self.queue.get()) is not None:
            index, data, digest = item
            try:
                if self.state in ("receiving", "broken"):
                    await self.write(index, data, digest)
            except Exception as e:  # noqa: BLE001 - the copy's own failure, told to the driver
                self.state, self.error = "failed", str(e) or type(e).__name__
                if self.upstream is not None:
                    self.upstream.transport.abort()
                self._close_downstream()
            finally:
                self.room.release()
        if self.state == "receiving" and self.written()[1] >= self.limits.count:
            self.state = "done"
        self.ended.set()

    def status(self) -> HopStatus:
        written, following = self.written()
        return {"state": self.state, "written": written, "next": following, "error": self.error,
                "forward": self.forward_error}

    async def close(self) -> None:
        """Stop listening, receiving and forwarding; wait until the chunks received are written (a write
        is never cut in two: the copy's `Sink.rewind` waits for it)."""
        self._stop_listening()
        if self.state in ("listening", "receiving"):
            self.state, self.error = "broken", self.error or "direct chain closed"
        if self.upstream is not None:
            self.upstream.transport.abort()
        self._close_downstream()
        if self.receiving is not None:
            self.receiving.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*self.tasks, return_exceptions=True)


class Sender:
    """A source's send to the first hop; `stop` ends it. Its reads hold ``lock``, and none starts once
    stopped, so the file may be read again from anywhere after `stop` (`SourceFile.restart`)."""

    def __init__(self, read: Callable[[int], tuple[Any, str]], lock: threading.Lock, secret: bytes,
                 limits: Limits, rate_limit: int) -> None:
        """``read(length)``: the next chunk and its digest (blocking: run in a thread)."""
        self.read, self.lock, self.secret = read, lock, secret
        self.limits, self.rate_limit = limits, rate_limit
        self.stopped = False
        self.writer: asyncio.StreamWriter | None = None
        self.sent = 0

    async def stop(self) -> None:
        await asyncio.to_thread(self.halt)
        if self.writer is not None:
            self.writer.transport.abort()

    def halt(self) -> None:
        """No read starts after this (blocking: a read in progress ends first)."""
        with self.lock:
            self.stopped = True

    async def send(self, host: str, port: int) -> SendEnd:
        """Every chunk, in order, to ``host:port``. A network failure ends it with a reason; a failed read
        raises (`TransferError`)."""
        limits = self.limits
        pending: asyncio.Future[tuple[Any, str]] | None = None
        try:
            _, self.writer = await _within(asyncio.open_connection(host, port), limits.timeout,
                                           f"connecting to {host}:{port}")
            self.writer.transport.set_write_buffer_limits(high=HIGH_WATER)
            self.writer.write(self.secret)
            started, pending = time.monotonic(), self._read(0)
            for index in range(limits.count):
                assert pending is not None
                data, digest = await pending
                pending = self._read(index + 1) if index + 1 < limits.count else None
                raw = digest.encode("ascii")
                self.writer.write(HEADER.pack(index, limits.length(index), len(raw)) + raw)
                self.writer.write(memoryview(data).cast("B"))
                await _within(self.writer.drain(), limits.timeout, "sending to the first hop")
                self.sent += limits.length(index)
                if self.rate_limit:
                    ahead = self.sent / self.rate_limit - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            self.writer.close()  # an orderly end, after what is still queued
            return {"sent": self.sent, "error": None}
        except HopError as e:
            if self.writer is not None:
                self.writer.transport.abort()
            return {"sent": self.sent, "error": str(e)}
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending

    def _read(self, index: int) -> asyncio.Future[tuple[Any, str]]:
        def read() -> tuple[Any, str]:
            with self.lock:
                if self.stopped:
                    raise HopError("stopped")
                return self.read(self.limits.length(index))

        return asyncio.ensure_future(asyncio.to_thread(read))
