"""Event latency, side by side in one run: a raw Redis pub/sub round trip, and CastRay's event path.

    python bench/events.py [--events 2000] [--rate 500]

(a) raw: one process publishes on a channel and reads it back (redis.asyncio, same pacing as (b));
    alone first, then again (a') interleaved with (b), so both see the same machine load.
(b) ours: ``node-changed`` published exactly as discovery does (one MULTI writing discovery's state and
    meta, with the PUBLISH) -> the node registry (a subprocess) applies it and publishes view-changed ->
    the gateway (a subprocess, ``create_app``) relays it -> a ``/ws`` client in this process. The time
    at which the registry's view-changed reaches a plain subscriber here is shown too.

Everything runs in a private namespace on the Redis at ``CASTRAY_REDIS_URL`` (default
redis://127.0.0.1:6379/0) and is deleted afterwards. Prints figures; asserts nothing.
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import redis.asyncio as aioredis

from castray.client import AsyncClient, ClientError, Snapshot
from castray.client.events import EventStream
from castray.local_ray import free_port
from castray.shared.events import NodeDelta
from castray.shared.names import Names
from castray.shared.settings import CommonSettings
from castray.shared.view import ViewReader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/x.py` sees only bench/
from tests.support.feed import DiscoveryFeed, make_cluster, make_node  # noqa: E402
from tests.support.namespace import drop_namespace  # noqa: E402

TARGET_MS = 5.0
WARMUP = 500  # the first second at 500/s: connections, script loading, caches; not measured
NODES = 20
REGISTRY = "from castray.node_registry.main import main; main()"
GATEWAY = ("from aiohttp import web\n"
           "from castray.gateway.app import create_app\n"
           "from castray.gateway.settings import GatewaySettings\n"
           "s = GatewaySettings()\n"
           "web.run_app(create_app(s), host=s.host, port=s.port, print=None, access_log=None)\n")


@dataclass
class Samples:
    """Send times by marker, and the latency of each marker that arrived (ms)."""

    sent: dict[int, float] = field(default_factory=dict)
    ms: dict[int, float] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    expect: int = 0

    def arrived(self, marker: int) -> None:
        t0 = self.sent.get(marker)
        if t0 is not None and marker not in self.ms:
            self.ms[marker] = (time.perf_counter() - t0) * 1000
            if len(self.ms) >= self.expect:
                self.done.set()

    def measured(self) -> list[float]:
        return [v for k, v in self.ms.items() if k >= WARMUP]


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[int(p * 10) - 1] if len(values) > 1 \
        else values[0]


async def paced(count: int, rate: float, send: Callable[[int], Awaitable[None]]) -> float:
    """Call ``send(i)`` for i in range(count) at ``rate`` per second; the rate achieved."""
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(i)
    return count / (time.perf_counter() - start)


async def until_done(samples: Samples, timeout: float = 10.0) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(samples.done.wait(), timeout)


# --- (a) raw Redis ----------------------------------------------------------------------------------


class RawChannel:
    """A channel this process publishes on and reads back: the raw pub/sub round trip."""

    def __init__(self, redis: aioredis.Redis, channel: str, count: int) -> None:
        self.redis = redis
        self.channel = channel
        self.samples = Samples(expect=count)
        self.pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self.reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.pubsub.subscribe(self.channel)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.pubsub.listen():
            if message.get("type") == "message":
                self.samples.arrived(int(message["data"]))

    async def send(self, i: int) -> None:
        self.samples.sent[i] = time.perf_counter()
        await self.redis.publish(self.channel, str(i))

    async def stop(self) -> None:
        await until_done(self.samples)
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
        await self.pubsub.aclose()  # type: ignore[no-untyped-call]


async def bench_raw(redis: aioredis.Redis, names: Names, count: int, rate: float) -> tuple[Samples, float]:
    raw = RawChannel(redis, f"{names.ns}:bench:raw", count)
    await raw.start()
    achieved = await paced(count, rate, raw.send)
    await raw.stop()
    return raw.samples, achieved


# --- (b) discovery -> registry -> gateway -> /ws --------------------------------------------------


async def spawn(code: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-c", code, env={**os.environ, **env})


async def wait_registry(redis: aioredis.Redis, names: Names, seq: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        meta = await ViewReader(redis, names).meta()
        if meta.epoch and meta.seq >= seq:
            return True
        await asyncio.sleep(0.1)
    return False


async def open_ws(api: AsyncClient, gateway: asyncio.subprocess.Process) -> EventStream | None:
    """The /ws stream (castray.client's, as a user's program reads it; retried while the gateway starts),
    its snapshot read."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and gateway.returncode is None:
        stream = api.events(topics=("nodes",))
        try:
            if isinstance(await asyncio.wait_for(anext(stream), 10), Snapshot):
                return stream
        except (ClientError, TimeoutError, StopAsyncIteration):
            pass
        await stream.close()
        await asyncio.sleep(0.2)
    return None


def bench_marker(record: Any) -> int | None:
    try:
        return int(record["labels"]["bench"])
    except (KeyError, TypeError, ValueError):
        return None


async def read_ws(stream: EventStream, samples: Samples, other: list[str]) -> None:
    async for event in stream:
        if isinstance(event, NodeDelta) and event.node is not None:
            marker = bench_marker({"labels": event.node.labels})
            if marker is not None:
                samples.arrived(marker)
        elif isinstance(event, Snapshot):
            other.append(f"snapshot({event.reason})")  # a resnapshot would lose samples


async def read_view(redis: aioredis.Redis, names: Names, samples: Samples, ready: asyncio.Event) -> None:
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(names.view_events)
    ready.set()
    try:
        async for message in pubsub.listen():
            if message.get("type") == "message":
                event = msgpack.unpackb(message["data"], raw=False, strict_map_key=False)
                if event.get("type") == "view-changed":
                    marker = bench_marker(event["payload"].get("node"))
                    if marker is not None:
                        samples.arrived(marker)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


@dataclass
class Ours:
    view: Samples
    ws: Samples | None
    raw_beside: Samples  # raw round trips interleaved with ours: same machine conditions
    achieved: float
    notes: list[str]


async def bench_ours(redis: aioredis.Redis, names: Names, url: str, count: int, rate: float) -> Ours:
    feed = DiscoveryFeed(redis, names)
    feed.clusters["c0"] = make_cluster(0)
    nodes = [make_node("c0", i) for i in range(NODES)]
    feed.nodes = {n.id: n for n in nodes}
    reset = await feed.reset()
    env = {"CASTRAY_NAMESPACE": names.ns, "CASTRAY_REDIS_URL": url, "CASTRAY_LOG_LEVEL": "WARNING"}
    port = free_port()
    notes: list[str] = []
    procs: list[asyncio.subprocess.Process] = []
    tasks: list[asyncio.Task[None]] = []
    with tempfile.TemporaryDirectory(prefix="castray-bench-") as data_dir:
        try:
            procs.append(await spawn(REGISTRY, env))
            if not await wait_registry(redis, names, reset.seq):
                raise RuntimeError("the node registry did not build its view within 20 s")
            procs.append(await spawn(GATEWAY, {**env, "CASTRAY_HOST": "127.0.0.1", "CASTRAY_PORT": str(port),
                                               "CASTRAY_DATA_DIR": data_dir}))
            view = Samples(expect=count)
            ws_samples: Samples | None = Samples(expect=count)
            subscribed = asyncio.Event()
            tasks.append(asyncio.create_task(read_view(redis, names, view, subscribed)))
            async with AsyncClient(f"http://127.0.0.1:{port}", token="") as api:
                ws = await open_ws(api, procs[1])
                if ws is None:
                    notes.append("the gateway's /ws did not answer: measured up to the registry's "
                                 "view-changed publish only")
                    ws_samples = None
                elif ws_samples is not None:
                    tasks.append(asyncio.create_task(read_ws(ws, ws_samples, notes)))
                await subscribed.wait()
                beside = RawChannel(redis, f"{names.ns}:bench:raw-beside", count)
                await beside.start()
                raw_sends: set[asyncio.Task[None]] = set()

                async def send(i: int) -> None:
                    raw_send = asyncio.create_task(beside.send(i))  # concurrently, on its own connection
                    raw_sends.add(raw_send)
                    raw_send.add_done_callback(raw_sends.discard)
                    node = nodes[i % NODES].model_copy(update={"labels": {"bench": str(i)}})

                    def stamp() -> None:  # the event is built; its MULTI goes now (as (a)'s PUBLISH does)
                        view.sent[i] = t0 = time.perf_counter()
                        if ws_samples is not None:
                            ws_samples.sent[i] = t0

                    await feed.node_upsert(node, on_send=stamp)

                achieved = await paced(count, rate, send)
                await beside.stop()
                await until_done(view)
                if ws_samples is not None:
                    await until_done(ws_samples)
                    await ws.close()  # type: ignore[union-attr]
            return Ours(view, ws_samples, beside.samples, achieved, notes)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for proc in procs:
                if proc.returncode is None:
                    proc.terminate()
                    try:
                        await asyncio.wait_for(proc.wait(), 5)
                    except TimeoutError:
                        proc.kill()
                        await proc.wait()


# --- report ----------------------------------------------------------------------------------------


def row(label: str, samples: Samples | None, count: int) -> tuple[str, float]:
    if samples is None:
        return f"{label:<52} {'-':>6} {'not measured':>28}", float("nan")
    ms = samples.measured()
    p50, p99 = pct(ms, 50), pct(ms, 99)
    mx = max(ms) if ms else float("nan")
    return f"{label:<52} {len(ms):>6} / {count - WARMUP:<6} {p50:>8.3f} {p99:>8.3f} {mx:>8.3f}", p99


async def run(count: int, rate: float) -> None:
    url = CommonSettings().redis_url  # CASTRAY_REDIS_URL, else REDIS_URL, else the default
    names = Names(f"bench-{uuid.uuid4().hex[:8]}")
    redis = aioredis.Redis.from_url(url)
    total = count + WARMUP
    load_before = os.getloadavg()[0]
    try:
        raw, raw_rate = await bench_raw(redis, names, total, rate)
        ours = await bench_ours(redis, names, url, total, rate)
    finally:
        await redis.aclose()
        await asyncio.to_thread(drop_namespace, url, names.ns)

    print(f"\nCastRay event latency: {count} events (+{WARMUP} warm-up) at {rate:.0f}/s requested; "
          f"achieved raw {raw_rate:.0f}/s, ours {ours.achieved:.0f}/s; Redis {url}")
    print(f"machine: {os.cpu_count()} CPUs, load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} "
          "after (a loaded machine inflates p99, ours most: it crosses three processes)")
    print(f"{'path':<52} {'received':>15} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    line, raw_p99 = row("(a) raw Redis publish -> subscribe, alone", raw, total)
    print(line)
    line, beside_p99 = row("(a') the same, interleaved with (b)", ours.raw_beside, total)
    print(line)
    line, _ = row("(b1) discovery publish -> registry view-changed", ours.view, total)
    print(line)
    line, ws_p99 = row("(b2) discovery publish -> gateway /ws client", ours.ws, total)
    print(line)
    if ours.ws is not None:
        for label, base in (("(b2) - (a)", raw_p99), ("(b2) - (a')", beside_p99)):
            diff = ws_p99 - base
            verdict = "within" if diff <= TARGET_MS else "OVER"
            print(f"p99 difference {label}: {diff:.3f} ms -> {verdict} the {TARGET_MS:g} ms target")
    for note in ours.notes:
        print(f"note: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2000, help="measured events per path (>= 1000)")
    parser.add_argument("--rate", type=float, default=500.0, help="events per second (>= 500)")
    args = parser.parse_args()
    asyncio.run(run(args.events, args.rate))


if __name__ == "__main__":
    main()
