"""WebSocket fan-out and REST load from client processes, for ``bench/scale.py`` (issue 16, items 2 and 4).

Latency is from the moment a change is written (discovery's MULTI for CastRay, the PUBLISH for the bare
broadcaster) to its arrival at each client, on the wall clock (all processes are on one machine). Each
change carries a marker, ``"labels": {"bench": "<i>"}``, that clients find in the frame's text without
parsing it. Clients run in processes of their own (``--clients``), so the driver's clock is not held up
by 10,000 frames a second; they report ``[marker, arrival]`` pairs in a JSON file.

The bare broadcaster (``--bare-ws``) is what a WebSocket relay costs at least: an aiohttp server that
sends a snapshot (the same bytes as CastRay's) on connect and puts each message of one Redis channel, as
it is, on every client's queue, which a task per client sends (as CastRay does, so that a slow client does
not hold up the others; without bounds or resnapshots).

``--rest`` is a closed loop of GETs from a process of its own, for figures that need more than one client
process (two gateways). Run by ``bench/scale.py``; prints nothing of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil
import redis.asyncio as aioredis
from aiohttp import web

from castray.local_ray import free_port

MARK = re.compile(r'"bench":"(\d+)"')
WAVE = 100  # clients connecting at once in one client process


# --- client processes ------------------------------------------------------------------------------


async def _read(ws: aiohttp.ClientWebSocketResponse, got: list[tuple[int, float]]) -> None:
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT or msg.data.startswith('{"type":"snapshot"'):
            continue  # a resnapshot counts as a miss, not as an arrival
        marks = MARK.findall(msg.data)
        if marks:
            got.append((max(int(m) for m in marks), time.time()))


async def clients(url: str, count: int, out: Path) -> None:
    """``count`` WebSockets, each past its snapshot; "ready" on stdout; arrivals until stdin closes."""
    got: list[tuple[int, float]] = []
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        async def one() -> None:
            ws = await http.ws_connect(url, max_msg_size=0)
            await ws.receive(timeout=120)  # the snapshot
            sockets.append(ws)

        for start in range(0, count, WAVE):
            await asyncio.gather(*(one() for _ in range(min(WAVE, count - start))))
        readers = [asyncio.create_task(_read(ws, got)) for ws in sockets]
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await asyncio.to_thread(out.write_text, json.dumps(got))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(ws.close() for ws in sockets)), 10)


async def rest(url: str, seconds: float, concurrency: int, out: Path) -> None:
    """A closed loop of ``concurrency`` GETs for ``seconds``: latencies of the 200s, and other statuses."""
    latencies: list[float] = []
    others: dict[str, int] = {}
    stop = time.monotonic() + seconds

    async def loop(http: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop:
            began = time.perf_counter()
            async with http.get(url, headers={"Accept-Encoding": "identity"}) as resp:
                await resp.read()
                if resp.status == 200:
                    latencies.append(time.perf_counter() - began)
                else:
                    others[str(resp.status)] = others.get(str(resp.status), 0) + 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency),
                                     auto_decompress=False) as http:
        began = time.monotonic()
        await asyncio.gather(*(loop(http) for _ in range(concurrency)))
        took = time.monotonic() - began
    await asyncio.to_thread(out.write_text, json.dumps({"latencies": latencies, "seconds": took,
                                                         "others": others}))


# --- the bare broadcaster --------------------------------------------------------------------------


def bare_ws_main(port: int, redis_url: str, channel: str, snapshot_file: str) -> None:
    snapshot = Path(snapshot_file).read_bytes()
    queues: dict[web.WebSocketResponse, asyncio.Queue[bytes]] = {}

    async def send(ws: web.WebSocketResponse, queue: asyncio.Queue[bytes]) -> None:
        while True:
            await ws.send_frame(await queue.get(), aiohttp.WSMsgType.TEXT)

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        await ws.send_frame(snapshot, aiohttp.WSMsgType.TEXT)
        queues[ws] = asyncio.Queue()
        sender = asyncio.create_task(send(ws, queues[ws]))
        try:
            async for _ in ws:
                pass
        finally:
            del queues[ws]
            sender.cancel()
        return ws

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def relay(_: web.Application) -> AsyncIterator[None]:
        r = aioredis.Redis.from_url(redis_url)
        pubsub = r.pubsub()
        await pubsub.subscribe(channel)

        async def forward() -> None:
            async for msg in pubsub.listen():
                if msg["type"] == "message":
                    for queue in queues.values():
                        queue.put_nowait(msg["data"])

        task = asyncio.create_task(forward())
        yield
        task.cancel()
        await r.aclose()

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/", ok)
    app.cleanup_ctx.append(relay)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# --- the driver's side -----------------------------------------------------------------------------


@dataclass
class Fanout:
    p50: float
    p99: float
    arrived: int
    expected: int
    rate: float  # changes per second achieved
    procs: list[tuple[str, int, float]]  # (name, peak RSS, CPU seconds) of each server process
    client_cpu: float = 0.0  # CPU seconds of the client processes, connects included
    load: float = 0.0  # the 1-minute load average when it began


@dataclass
class RestLoad:
    rate: float
    p99: float
    others: dict[str, int]
    procs: list[tuple[str, int, float]]
    requests: int = 0
    load: float = 0.0  # the 1-minute load average when it began


def tree(proc: psutil.Process) -> list[psutil.Process]:
    """A server and its children (the extra gateway processes)."""
    with contextlib.suppress(psutil.Error):
        return [proc, *proc.children(recursive=True)]
    return [proc]


class Usage:
    """Peak RSS and CPU seconds of each process of a server, from `start` to `stop`."""

    def __init__(self, server: psutil.Process, name: str) -> None:
        self.procs = tree(server)
        self.names = [name if i == 0 else f"{name} {i + 1}" for i in range(len(self.procs))]
        self.cpu0 = [sum(p.cpu_times()[:2]) for p in self.procs]
        self.rss = [p.memory_info().rss for p in self.procs]
        self._task = asyncio.create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            for i, p in enumerate(self.procs):
                with contextlib.suppress(psutil.Error):
                    self.rss[i] = max(self.rss[i], p.memory_info().rss)
            await asyncio.sleep(0.1)

    async def stop(self) -> list[tuple[str, int, float]]:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return [(n, rss, sum(p.cpu_times()[:2]) - c0)
                for n, p, rss, c0 in zip(self.names, self.procs, self.rss, self.cpu0, strict=True)]


async def _spawn_clients(url: str, count: int, processes: int, workdir: Path
                         ) -> list[tuple[asyncio.subprocess.Process, Path]]:
    out = []
    for k in range(processes):
        path = workdir / f"arrivals-{k}.json"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--clients", url, str(count // processes + (k < count % processes)),
            str(path), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        out.append((proc, path))
    for proc, _ in out:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 300)
        if line.strip() != b"ready":
            raise RuntimeError(f"a client process did not get its sockets ready: {line!r}")
    return out


async def fanout(url: str, server: psutil.Process, name: str, send: Callable[[int], Awaitable[float]], *,
                 count: int, rate: float, seconds: float, workdir: Path, processes: int = 2,
                 first: int = 0) -> Fanout:
    """``count`` clients (over ``processes`` processes) on ``url``; ``rate`` changes a second for ``seconds``
    through ``send(marker)`` (markers from ``first`` on), which returns the wall-clock time the change was
    written."""
    started = await _spawn_clients(url, count, processes, workdir)
    load = os.getloadavg()[0]
    usage = Usage(server, name)
    sent: dict[int, float] = {}
    began = time.monotonic()
    for i in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
        sent[first + i] = await send(first + i)
    achieved = len(sent) / (time.monotonic() - began)
    await asyncio.sleep(2.0)  # the last changes' way to every client
    procs = await usage.stop()
    latencies: list[float] = []
    client_cpu = 0.0
    for proc, path in started:
        with contextlib.suppress(psutil.Error):
            client_cpu += sum(psutil.Process(proc.pid).cpu_times()[:2])
        assert proc.stdin is not None
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), 60)
        arrivals = json.loads(await asyncio.to_thread(path.read_text))
        latencies += [t - sent[i] for i, t in arrivals if i in sent]
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
    return Fanout(q[49], q[98], len(latencies), len(sent) * count, achieved, procs, client_cpu, load)


async def rest_load(url: str, server: psutil.Process, name: str, *, seconds: float, concurrency: int,
                    workdir: Path, processes: int = 2) -> RestLoad:
    """``concurrency`` GETs in a closed loop, spread over ``processes`` client processes."""
    load = os.getloadavg()[0]
    usage = Usage(server, name)
    runs = []
    for k in range(processes):
        path = workdir / f"rest-{k}.json"
        runs.append((await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--rest", url, str(seconds), str(concurrency // processes), str(path)),
            path))
    latencies: list[float] = []
    others: dict[str, int] = {}
    rate = 0.0
    for proc, path in runs:
        await asyncio.wait_for(proc.wait(), seconds + 120)
        result = json.loads(await asyncio.to_thread(path.read_text))
        latencies += result["latencies"]
        rate += len(result["latencies"]) / result["seconds"]
        for status, n in result["others"].items():
            others[status] = others.get(status, 0) + n
    procs = await usage.stop()
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) >= 2 else float("nan")
    return RestLoad(rate, p99, others, procs, len(latencies), load)


# --- servers and rows for bench/scale.py ---------------------------------------------------------


async def start_gateway(env: dict[str, str], processes: int) -> tuple[asyncio.subprocess.Process, str]:
    """``castray gateway`` with ``processes`` processes on a free port, once each of them is ready."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "castray.gateway.main",
        env={**env, "CASTRAY_PORT": str(port), "CASTRAY_GATEWAY_PROCESSES": str(processes)})
    base = f"http://127.0.0.1:{port}"
    seen: set[str] = set()
    end = time.monotonic() + 60
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        while len(seen) < processes:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{base}/api/ready") as resp:
                    if resp.status == 200:
                        seen.add(resp.headers["X-CastRay-Instance"])
            if time.monotonic() > end:
                raise RuntimeError(f"{processes} gateway processes were not ready within 60 s")
            await asyncio.sleep(0.02)
    return proc, base


async def capture(ws_url: str, send: Callable[[int], Awaitable[float]], mark: int) -> tuple[bytes, bytes]:
    """CastRay's snapshot and one node delta (its marker ``mark``), as a client receives them."""
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
        snapshot = (await ws.receive(timeout=60)).data
        await send(mark)
        while True:
            msg = await ws.receive(timeout=30)
            if f'"bench":"{mark}"' in msg.data:
                return snapshot.encode(), msg.data.encode()


def fan_cell(f: Fanout) -> str:
    """Latency, and the servers' CPU per frame delivered: on shared cores the steadier figure."""
    cpu = sum(c for _, _, c in f.procs)
    return (f"p50 {f.p50 * 1e3:,.1f} / p99 {f.p99 * 1e3:,.1f} ms, {f.arrived:,} of {f.expected:,} arrived, "
            f"{cpu / max(f.arrived, 1) * 1e6:.0f} µs CPU per frame, load {f.load:.1f}; "
            f"{procs_cell(f.procs)}; clients CPU {f.client_cpu:.1f} s")


def procs_cell(procs: list[tuple[str, int, float]]) -> str:
    return "; ".join(f"{name} RSS {mb(rss)} CPU {cpu:.1f} s" for name, rss, cpu in procs)


def rest_cell(r: RestLoad) -> str:
    refused = "".join(f", {n} x {status}" for status, n in sorted(r.others.items()))
    cpu = sum(c for _, _, c in r.procs)
    per = cpu / max(r.requests, 1) * 1e3
    return (f"{r.rate:,.0f} req/s, p99 {r.p99 * 1e3:,.1f} ms{refused}, {per:.2f} ms CPU per request, "
            f"load {r.load:.1f}; {procs_cell(r.procs)}")


def mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


if __name__ == "__main__":
    if sys.argv[1] == "--clients":
        asyncio.run(clients(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])))
    elif sys.argv[1] == "--rest":
        asyncio.run(rest(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])))
    elif sys.argv[1] == "--bare-ws":
        bare_ws_main(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
