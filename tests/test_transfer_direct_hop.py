"""A direct chain's hop (`castray.transfer.direct_hop`) on real sockets, writing a real copy (`Sink`) the way
the agent does (`castray.transfer.agent.sink_hop`): who may connect, and what a peer may send.

- a peer with a wrong secret is closed and nothing is written; the hop keeps listening, and the right peer
  then sends the whole file, forwarded to the next hop as it arrives: both copies verified;
- a peer with the secret that sends a chunk larger than the plan allows breaks the stream, and nothing
  of it is written.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from castray.transfer.agent import SourceFile, sink_hop
from castray.transfer.direct_hop import HEADER, SECRET_BYTES, Hop, Limits, Sender
from castray.transfer.sink import Sink, SinkSpec, open_sink

MiB = 1024 * 1024
CHUNK = 256 * 1024


def sink(tmp_path: Path, name: str) -> Sink:
    return open_sink(SinkSpec(dir=str(tmp_path / "inbox" / name), file_name="copy.bin", transfer_id="d1",
                              token="t"))


def source(tmp_path: Path, size: int) -> tuple[Path, str]:
    path = tmp_path / "source.bin"
    data = os.urandom(size)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


async def refused(port: int, send: bytes) -> bytes:
    """Connect, send ``send``, and read what comes back until the hop closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(send)
    writer.write_eof()
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 30)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


async def done(*hops: Hop) -> None:
    await asyncio.gather(*(h.ended.wait() for h in hops))


def size_of(path: Path) -> int:
    return path.stat().st_size


def sha_of(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


async def test_a_wrong_secret_is_closed_and_the_right_peer_then_sends_the_whole_file(tmp_path: Path) -> None:
    size = 2 * MiB + 12345
    path, sha = source(tmp_path, size)
    secret = os.urandom(SECRET_BYTES)
    limits = Limits(size, CHUNK, 30.0)
    first, second = sink(tmp_path, "h2"), sink(tmp_path, "h3")
    hop1, hop2 = sink_hop(first, secret, limits), sink_hop(second, secret, limits)
    port1, port2 = await hop1.listen("127.0.0.1", 60), await hop2.listen("127.0.0.1", 60)
    try:
        wrong = bytes(b ^ 1 for b in secret)
        assert await refused(port1, wrong + HEADER.pack(0, CHUNK, 0) + b"x" * 1000) == b""
        assert await refused(port1, secret[:5]) == b""  # too short: the stream ended before the secret
        assert hop1.refused == 2 and hop1.state == "listening"
        assert first.done == 0 and size_of(tmp_path / "inbox" / "h2" / first.tmp) == 0

        await hop1.connect("127.0.0.1", port2)  # h2 forwards to h3
        src = SourceFile.open(path, False, None, True)
        end = await Sender(src.read, src.lock, secret, limits, 0).send("127.0.0.1", port1)
        await asyncio.wait_for(done(hop1, hop2), 60)
        assert end == {"sent": size, "error": None}
        for hop, copy in ((hop1, first), (hop2, second)):
            assert hop.status() == {"state": "done", "written": size, "next": limits.count, "error": None,
                                    "forward": None}, hop.status()
            placed = await asyncio.to_thread(copy.finish, sha)
            assert placed["bytes"] == size
            assert sha_of(placed["path"]) == sha
        with pytest.raises(ConnectionRefusedError):  # one peer per listener: it closed once h1 was in
            await asyncio.open_connection("127.0.0.1", port1)
    finally:
        for hop in (hop1, hop2):
            await hop.close()
        for copy in (first, second):
            await asyncio.to_thread(copy.abort)


async def test_a_chunk_larger_than_the_plan_breaks_the_stream_and_nothing_is_written(tmp_path: Path) -> None:
    secret = os.urandom(SECRET_BYTES)
    limits = Limits(4 * CHUNK, CHUNK, 30.0)
    copy = sink(tmp_path, "h2")
    hop = sink_hop(copy, secret, limits)
    port = await hop.listen("127.0.0.1", 60)
    try:
        digest = b"0" * 64
        frame = HEADER.pack(0, CHUNK + 1, len(digest)) + digest + b"y" * (CHUNK + 1)
        await refused(port, secret + frame)
        await asyncio.wait_for(done(hop), 30)
        status = hop.status()
        assert status["state"] == "broken" and "bad frame" in (status["error"] or ""), status
        assert status["written"] == 0 and copy.done == 0
        assert size_of(tmp_path / "inbox" / "h2" / copy.tmp) == 0
    finally:
        await hop.close()
        await asyncio.to_thread(copy.abort)
    assert not list((tmp_path / "inbox" / "h2").iterdir())  # noqa: ASYNC240 - the temp file gone with it
