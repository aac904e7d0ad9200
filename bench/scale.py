"""The gateway at scale: ``GET /api/nodes`` and ``/api/status`` at 1k and 10k nodes, beside a bare aiohttp
server returning the very same bytes (issue 16).

    python bench/scale.py [--sizes 1000,10000] [--clusters 20] [--seconds 5] [--concurrency 32] [--rounds 1]
                          [--fanout-clients 1000] [--rate 10] [--fanout-seconds 10] [--ws-clients 1000]

The view is filled through the real path: a discovery-like feed (``tests/support/feed.py``, what discovery
writes) rewrites discovery's state and publishes ``source-reset``; an in-process node registry copies it
into the view; the gateway is ``castray gateway``'s own entry point in a subprocess (own namespace, free
port). The body of each endpoint is fetched once from the gateway and served as it is by a bare aiohttp
server (a subprocess of this script too). Each figure is a closed loop of ``--concurrency`` aiohttp
clients for ``--seconds`` (``Accept-Encoding: identity`` on both sides, so both send the same bytes),
bare then CastRay, ``--rounds`` times, the median round kept. Prints req/s and p99 of each, the ratio
(CastRay / bare), the peak RSS and the CPU seconds of each server, and the load average before and after.
Then, at 1k nodes, a connect storm: ``--ws-clients`` WebSockets opened at once, the time until each has its
snapshot (the bare server sends the /api/nodes body on connect; the ratio is bare time / CastRay time).
Every refused answer is counted: 503 ``overloaded`` (the heavy slots, ``services/gateway/backpressure.py``)
apart from 503 ``redis_unavailable`` (a Redis timeout).

First, at ``--fanout-nodes`` (1k), the fan-out (``bench/fanout.py``): ``--fanout-clients``
``/ws?topics=nodes``
clients (in two client processes) while ``--rate`` node changes a second go through the real path for
``--fanout-seconds``; the latency from each change's write to its arrival at each client, p50 / p99, beside
a bare aiohttp broadcaster relaying the same delta bytes from a Redis channel; then the same with two
gateway processes (``CASTRAY_GATEWAY_PROCESSES=2``, one port) against one, and ``GET /api/nodes`` with
32 clients (in two processes) against one and two gateway processes. RSS and CPU of every server process.
Prints figures; asserts nothing. Stops everything it started, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import redis.asyncio as aioredis
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/x.py` sees only bench/

from bench import fanout  # noqa: E402  (bench/fanout.py, beside this file)
from castray.local_ray import free_port  # noqa: E402
from castray.node_registry.settings import RegistrySettings  # noqa: E402
from castray.node_registry.worker import RegistryWorker  # noqa: E402
from castray.shared.names import Names  # noqa: E402
from tests.support.feed import DiscoveryFeed  # noqa: E402
from tests.support.namespace import drop_namespace  # noqa: E402

IDENTITY = {"Accept-Encoding": "identity"}
TEMPLATE_MARK = 99_999  # the marker of the delta captured from CastRay, replaced in the bare broadcaster's
STATES = ("ALIVE", "ALIVE", "ALIVE", "DEAD", "UNREACHABLE")


@dataclass
class Run:
    requests: int
    seconds: float
    p99: float
    rss_peak: int
    cpu: float
    shed: int = 0  # 503 overloaded (the heavy slots and queue full)
    redis_503: int = 0  # 503 redis_unavailable (a Redis timeout or error)
    other: int = 0  # any other status

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def bare_main(port: int, body_file: str) -> None:
    """The baseline: ``/ws`` sends the file's bytes on connect, any other GET answers with them."""
    body = Path(body_file).read_bytes()

    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        await ws.send_frame(body, aiohttp.WSMsgType.TEXT)
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/{tail:.*}", handler)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


async def wait_http(url: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    async with aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > end:
                raise RuntimeError(f"{url} did not answer 200 within {deadline} s")
            await asyncio.sleep(0.1)


async def load(url: str, proc: psutil.Process, *, seconds: float, concurrency: int) -> Run:
    """A closed loop of ``concurrency`` clients for ``seconds``; the server's peak RSS and CPU beside it."""
    latencies: list[float] = []
    refused = {"overloaded": 0, "redis": 0, "other": 0}
    stop = time.monotonic() + seconds
    cpu0 = sum(proc.cpu_times()[:2])
    rss = proc.memory_info().rss

    async def client(http: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop:
            started = time.perf_counter()
            async with http.get(url, headers=IDENTITY) as resp:
                body = await resp.read()
                if resp.status == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    refused["overloaded" if b'"overloaded"' in body
                            else "redis" if b'"redis_unavailable"' in body else "other"] += 1

    async def sample() -> None:
        nonlocal rss
        while True:
            rss = max(rss, proc.memory_info().rss)
            await asyncio.sleep(0.05)

    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, auto_decompress=False) as http:
        sampler = asyncio.create_task(sample())
        began = time.monotonic()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        took = time.monotonic() - began
        sampler.cancel()
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) >= 2 else float("nan")
    return Run(len(latencies), took, p99, rss, cpu, refused["overloaded"], refused["redis"], refused["other"])


async def connect_storm(url: str, proc: psutil.Process, clients: int, *,
                        expect: str = "") -> tuple[float, int]:
    """``clients`` WebSockets opened at once: seconds until each has its first message (the snapshot), and
    the server's RSS then."""
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as http:
        sockets: list[aiohttp.ClientWebSocketResponse] = []

        async def one() -> None:
            ws = await http.ws_connect(url, max_msg_size=0)
            sockets.append(ws)
            msg = await ws.receive(timeout=120)
            if msg.type != aiohttp.WSMsgType.TEXT or not msg.data.startswith(expect):
                raise RuntimeError(f"{url}: {msg.type} {str(msg.data)[:200]!r} instead of a snapshot")

        began = time.monotonic()
        await asyncio.gather(*(one() for _ in range(clients)))
        took = time.monotonic() - began
        rss = proc.memory_info().rss
        await asyncio.gather(*(ws.close() for ws in sockets))
    return took, rss


def mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def cell(r: Run) -> str:
    refused = (f", 503: {r.shed} overloaded, {r.redis_503} Redis" if r.shed or r.redis_503 else "") + \
        (f", {r.other} other errors" if r.other else "")
    return f"{r.rate:,.0f} req/s, p99 {r.p99 * 1e3:,.1f} ms, RSS {mb(r.rss_peak)}, CPU {r.cpu:.1f} s{refused}"


async def spawn(*argv: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*argv, env=env)


async def main(args: argparse.Namespace) -> None:
    redis_url = os.environ.get("CASTRAY_REDIS_URL", "redis://127.0.0.1:6379/0")
    namespace = f"bench-scale-{uuid.uuid4().hex[:8]}"
    names = Names(namespace)
    redis = aioredis.Redis.from_url(redis_url)
    workdir = Path(tempfile.mkdtemp(prefix="castray-scale-"))
    started: list[asyncio.subprocess.Process] = []
    registry = RegistryWorker(settings=RegistrySettings(redis_url=redis_url, namespace=namespace))
    reg_task = asyncio.create_task(registry.run())
    load_before = os.getloadavg()
    rows: list[str] = []
    try:
        await asyncio.wait_for(registry.ready.wait(), 30)
        port = free_port()
        env = {**os.environ, "CASTRAY_NAMESPACE": namespace, "CASTRAY_REDIS_URL": redis_url,
               "CASTRAY_HOST": "127.0.0.1", "CASTRAY_PORT": str(port), "CASTRAY_LOG_LEVEL": "WARNING",
               "CASTRAY_DATA_DIR": str(workdir / "data")}
        feed = DiscoveryFeed(redis, names)
        if args.fanout_clients:
            rows += await fanout_rows(redis, names, feed, env, workdir, args, started)
        gateway = await spawn(sys.executable, "-m", "castray.gateway.main", env=env)
        started.append(gateway)
        base = f"http://127.0.0.1:{port}"
        await wait_http(f"{base}/api/health")
        gw = psutil.Process(gateway.pid)
        for size in args.sizes:
            await feed.fill(size, args.clusters, STATES)
            for path in ("/api/nodes", "/api/status"):
                async with aiohttp.ClientSession(auto_decompress=False) as http, \
                        http.get(base + path, headers=IDENTITY) as resp:
                    body = await resp.read()
                body_file = workdir / "body.json"
                body_file.write_bytes(body)
                bare_port = free_port()
                bare = await spawn(sys.executable, __file__, "--bare", str(bare_port), str(body_file))
                started.append(bare)
                await wait_http(f"http://127.0.0.1:{bare_port}/")
                pairs = []
                for _ in range(args.rounds):
                    b = await load(f"http://127.0.0.1:{bare_port}{path}", psutil.Process(bare.pid),
                                   seconds=args.seconds, concurrency=args.concurrency)
                    c = await load(base + path, gw, seconds=args.seconds, concurrency=args.concurrency)
                    pairs.append((c.rate / b.rate if b.rate else float("nan"), b, c))
                ratio, b, c = sorted(pairs, key=lambda p: p[0])[len(pairs) // 2]
                rows.append(f"| `GET {path}`, {size:,} nodes ({len(body) / 1e3:,.0f} KB) | {cell(b)} "
                            f"| {cell(c)} | {ratio:.2f} |")
                print(rows[-1], flush=True)
                if path == "/api/nodes" and args.ws_clients and size <= args.ws_max_nodes:
                    rows.append(await storm_row(base, bare_port, gw, psutil.Process(bare.pid), size, args))
                    print(rows[-1], flush=True)
                bare.terminate()
                await asyncio.wait_for(bare.wait(), 10)
        rss_after = gw.memory_info().rss
    finally:
        for proc in started:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 10)
        await registry.close()
        reg_task.cancel()
        await asyncio.gather(reg_task, return_exceptions=True)
        await redis.aclose()
        drop_namespace(redis_url, namespace)
    load_after = os.getloadavg()
    print(f"\n{args.concurrency} concurrent clients, {args.seconds:g} s per figure, median of {args.rounds} "
          f"round(s), {args.clusters} clusters; load average before "
          f"{' '.join(f'{x:.2f}' for x in load_before)}, after {' '.join(f'{x:.2f}' for x in load_after)}; "
          f"gateway RSS after the run {mb(rss_after)}\n")
    print("| what | baseline: bare aiohttp with the same bytes, or one gateway process | CastRay gateway "
          "| ratio |")
    print("|---|---|---|---|")
    for row in rows:
        print(row)


async def storm_row(base: str, bare_port: int, gw: psutil.Process, bare: psutil.Process, size: int,
                    args: argparse.Namespace) -> str:
    """Connect storms, median of ``--rounds`` pairs: the bare server sends the same size of snapshot (the
    /api/nodes body) on connect; CastRay's /ws?topics=clusters,nodes its snapshot of the view."""
    pairs = []
    for _ in range(args.rounds):
        b, b_rss = await connect_storm(f"ws://127.0.0.1:{bare_port}/ws", bare, args.ws_clients)
        c, c_rss = await connect_storm(f"{base.replace('http', 'ws')}/ws?topics=clusters,nodes", gw,
                                       args.ws_clients, expect='{"type":"snapshot"')
        pairs.append((b / c, b, b_rss, c, c_rss))
    ratio, b, b_rss, c, c_rss = sorted(pairs)[len(pairs) // 2]
    return (f"| {args.ws_clients:,} `/ws` connects at once, {size:,} nodes | all snapshots in {b:.2f} s, "
            f"RSS {mb(b_rss)} | all snapshots in {c:.2f} s, RSS {mb(c_rss)} | {ratio:.2f} |")


async def fanout_rows(redis: aioredis.Redis, names: Names, feed: DiscoveryFeed, env: dict[str, str],
                      workdir: Path, args: argparse.Namespace, started: list[asyncio.subprocess.Process]
                      ) -> list[str]:
    """/ws latency with ``--fanout-clients`` clients at ``--rate`` changes/s (bare broadcaster, CastRay with
    one gateway process, with two), and ``GET /api/nodes`` with one and two gateway processes."""
    await feed.fill(args.fanout_nodes, args.clusters, STATES)
    nodes = list(feed.nodes.values())

    async def castray_send(marker: int) -> float:
        stamp = [0.0]
        node = nodes[marker % len(nodes)].model_copy(update={"labels": {"bench": str(marker)}})
        await feed.node_upsert(node, on_send=lambda: stamp.__setitem__(0, time.time()))
        return stamp[0]

    kw: dict[str, Any] = dict(count=args.fanout_clients, rate=args.rate, seconds=args.fanout_seconds,
                              workdir=workdir)
    fans: dict[str, fanout.Fanout] = {}
    rests: dict[int, fanout.RestLoad] = {}
    for processes in (1, 2):
        gw, base = await fanout.start_gateway(env, processes)
        started.append(gw)
        ws_url = base.replace("http", "ws") + "/ws?topics=nodes"
        if processes == 1:
            snapshot, template = await fanout.capture(ws_url, castray_send, TEMPLATE_MARK)
            fans["bare"] = await bare_fanout(redis, env["CASTRAY_REDIS_URL"], names, snapshot, template,
                                             workdir, kw, started)
            print(f"bare broadcaster: {fanout.fan_cell(fans['bare'])}", flush=True)
        fans[str(processes)] = await fanout.fanout(ws_url, psutil.Process(gw.pid), "gateway", castray_send,
                                                   first=processes * 100_000, **kw)
        print(f"CastRay, {processes} process(es): {fanout.fan_cell(fans[str(processes)])}", flush=True)
        rests[processes] = await fanout.rest_load(base + "/api/nodes", psutil.Process(gw.pid), "gateway",
                                                  seconds=args.seconds, concurrency=args.concurrency,
                                                  workdir=workdir)
        print(f"GET /api/nodes, {processes} process(es): {fanout.rest_cell(rests[processes])}", flush=True)
        gw.terminate()
        await asyncio.wait_for(gw.wait(), 15)
    what = f"{args.fanout_clients:,} clients, {args.rate:g} changes/s, {args.fanout_nodes:,} nodes"
    b, one, two = fans["bare"], fans["1"], fans["2"]
    cell, rest = fanout.fan_cell, fanout.rest_cell
    return [f"| `/ws` latency, write to client, {what} | bare broadcaster: {cell(b)} | 1 gateway process: "
            f"{cell(one)} | p99 {one.p99 / b.p99:.2f}x bare |",
            f"| `/ws` latency, {what}: 2 gateway processes vs 1 | 1 process: {cell(one)} | 2 processes: "
            f"{cell(two)} | p99 {two.p99 / one.p99:.2f}x |",
            f"| `GET /api/nodes`, {args.fanout_nodes:,} nodes, {args.concurrency} clients in 2 processes: 2 "
            f"gateway processes vs 1 | 1 process: {rest(rests[1])} | 2 processes: {rest(rests[2])} "
            f"| {rests[2].rate / rests[1].rate:.2f}x req/s |"]


async def bare_fanout(redis: aioredis.Redis, redis_url: str, names: Names, snapshot: bytes, template: bytes,
                      workdir: Path, kw: dict[str, Any], started: list[asyncio.subprocess.Process]
                      ) -> fanout.Fanout:
    """The bare broadcaster with the same snapshot and the same delta bytes (only the marker differs)."""
    snapshot_file = workdir / "snapshot.json"
    snapshot_file.write_bytes(snapshot)
    port, channel = free_port(), f"{names.ns}:bench:bare-ws"
    bare = await spawn(sys.executable, fanout.__file__, "--bare-ws", str(port), redis_url, channel,
                       str(snapshot_file))
    started.append(bare)
    await wait_http(f"http://127.0.0.1:{port}/")
    mark = f'"bench":"{TEMPLATE_MARK}"'.encode()

    async def send(marker: int) -> float:
        sent = time.time()
        await redis.publish(channel, template.replace(mark, f'"bench":"{marker}"'.encode()))
        return sent

    try:
        return await fanout.fanout(f"ws://127.0.0.1:{port}/ws", psutil.Process(bare.pid), "bare", send,
                                   first=300_000, **kw)
    finally:
        bare.terminate()
        await asyncio.wait_for(bare.wait(), 10)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",") if x], default=[1000, 10_000],
                   help="view sizes of the REST figures (\"\": none)")
    p.add_argument("--clusters", type=int, default=20)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--ws-clients", type=int, default=1000, help="WebSockets of the connect storm (0: none)")
    p.add_argument("--ws-max-nodes", type=int, default=1000, help="largest view the storm runs at")
    p.add_argument("--fanout-clients", type=int, default=1000,
                   help="/ws clients of the latency figures (0: no fan-out or two-gateway figures)")
    p.add_argument("--rate", type=float, default=10.0, help="node changes a second of the latency figures")
    p.add_argument("--fanout-seconds", type=float, default=10.0, help="seconds of changes per latency figure")
    p.add_argument("--fanout-nodes", type=int, default=1000, help="view size of the fan-out figures")
    return p.parse_args()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--bare":
        bare_main(int(sys.argv[2]), sys.argv[3])
    else:
        asyncio.run(main(parse()))
