"""Live node latency: from a node's change in its Ray dashboard to the node event on a ``/ws`` client.

    python bench/live.py [--joins 5] [--kills 5]

Against the real thing: a Ray head (free ports, own temp dir) and ``castray up --no-ray`` (a subprocess,
free gateway port, own namespace, discovery pointed at that head only, default settings otherwise).
For each of N workers joining, then each of N workers whose raylet gets SIGTERM, it measures the delay
from the moment the node appears (resp. shows DEAD) in the dashboard's ``/api/v0/nodes`` (polled here
every 20 ms, so that side is up to 20 ms late) to the arrival of its ``node-changed`` on ``/ws``.
Each change is started after a random pause of up to one discovery poll interval: the previous event
arrives just after a poll, so without it every SIGTERM would land right after a poll and measure the
worst case (~one interval) each time, not the spread a user sees.
Prints every delay, the median and max, beside the issues' targets and discovery's poll interval.
Prints figures; asserts nothing. Stops everything it started, also on Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/x.py` sees only bench/

from castray import local_ray  # noqa: E402
from castray.client import AsyncClient, ClientError, SnapshotMessage  # noqa: E402
from castray.client.events import EventStream  # noqa: E402
from castray.discovery.settings import DiscoverySettings  # noqa: E402
from castray.local_ray import free_port  # noqa: E402
from castray.shared.events import NodeDelta  # noqa: E402
from castray.shared.settings import CommonSettings  # noqa: E402
from tests.support.namespace import drop_namespace  # noqa: E402
from tests.support.ray_nodes import start_worker  # noqa: E402

DASH_POLL = 0.020
TARGETS = {"issue 3": 2.0, "issue 2": 3.0}
DEADLINE = 60.0


class Clock:
    """First time each (Ray node id, state) was seen in the dashboard and on /ws."""

    def __init__(self) -> None:
        self.dash: dict[tuple[str, str], float] = {}
        self.ws: dict[tuple[str, str], float] = {}

    async def poll_dashboard(self, http: aiohttp.ClientSession, url: str) -> None:
        nxt = time.monotonic()
        while True:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError):
                async with http.get(f"{url}/api/v0/nodes?limit=10000&detail=true",
                                    timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    rows = (await resp.json(content_type=None))["data"]["result"]["result"]
                now = time.monotonic()
                for row in rows:
                    self.dash.setdefault((row["node_id"], row["state"]), now)
            nxt += DASH_POLL
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    async def read_ws(self, stream: EventStream) -> None:
        async for event in stream:
            now = time.monotonic()
            if isinstance(event, NodeDelta) and event.node is not None:
                self.ws.setdefault((event.node.ray_node_id, event.node.state), now)
            elif isinstance(event, SnapshotMessage):
                for node in event.nodes:
                    self.ws.setdefault((node.ray_node_id, node.state), now)

    async def delay(self, key: tuple[str, str]) -> float:
        """ws arrival - dashboard appearance of ``key``, once both were seen (seconds)."""
        end = time.monotonic() + DEADLINE
        while key not in self.dash or key not in self.ws:
            if time.monotonic() > end:
                raise TimeoutError(f"{key} not seen on both sides within {DEADLINE:.0f} s "
                                   f"(dashboard: {key in self.dash}, /ws: {key in self.ws})")
            await asyncio.sleep(0.01)
        return self.ws[key] - self.dash[key]


def start_up(heads: list[local_ray.RayNode], work: Path, namespace: str
             ) -> tuple[subprocess.Popen[bytes], int]:
    """``castray up --no-ray`` on a free port, its discovery pointed at these heads only."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASTRAY_") and k != "RAY_ADDRESS"}
    env.update({"CASTRAY_NAMESPACE": namespace, "CASTRAY_REDIS_URL": redis_url(),
                "CASTRAY_DATA_DIR": str(work / "data"), "CASTRAY_SCAN_HOSTS": "127.0.0.1",
                "CASTRAY_SCAN_PORTS": ",".join(str(h.dashboard_port) for h in heads),
                "CASTRAY_RAY_TEMP_DIRS": ",".join(h.temp_dir for h in heads),
                "RAY_TMPDIR": heads[0].temp_dir, "CASTRAY_LOG_LEVEL": "WARNING"})
    with open(work / "up.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "castray.cli", "up", "--no-ray", "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, port


def stop_up(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(psutil.Error):
        procs = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
        proc.send_signal(signal.SIGINT)
        _gone, alive = psutil.wait_procs(procs, timeout=12)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def redis_url() -> str:
    """``CASTRAY_REDIS_URL``, else ``REDIS_URL``, else the default: the services' own rule."""
    return CommonSettings().redis_url


async def wait_ready(api: AsyncClient, head: local_ray.RayNode) -> None:
    end = time.monotonic() + 120
    while time.monotonic() < end:
        with contextlib.suppress(ClientError):
            if any(n.ray_node_id == head.node_id for n in await api.nodes()):
                return
        await asyncio.sleep(0.2)
    raise TimeoutError("castray up did not show the head within 120 s")


async def measure(head: local_ray.RayNode, base: str, joins: int, kills: int,
                  workers: list[local_ray.RayNode]) -> tuple[list[float], list[float]]:
    clock = Clock()
    async with aiohttp.ClientSession() as http, AsyncClient(base, token="") as api:
        await wait_ready(api, head)
        stream = api.events(topics=("nodes",))
        tasks = [asyncio.create_task(clock.read_ws(stream)),
                 asyncio.create_task(clock.poll_dashboard(http, head.dashboard_url))]
        try:
            poll = DiscoverySettings().poll_interval
            joined: list[float] = []
            for i in range(joins):
                await asyncio.sleep(random.uniform(0, poll))
                worker = await asyncio.to_thread(start_worker, head)
                workers.append(worker)
                assert worker.node_id
                joined.append(await clock.delay((worker.node_id, "ALIVE")))
                print(f"  join {i + 1}: {joined[-1] * 1000:7.0f} ms", flush=True)
            died: list[float] = []
            for i, worker in enumerate(workers[:kills]):
                raylet = worker.raylet_pid()
                assert raylet and worker.node_id
                await asyncio.sleep(random.uniform(0, poll))
                os.kill(raylet, signal.SIGTERM)
                died.append(await clock.delay((worker.node_id, "DEAD")))
                print(f"  SIGTERM {i + 1}: {died[-1] * 1000:7.0f} ms", flush=True)
            return joined, died
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await stream.close()


def report(joined: list[float], died: list[float]) -> None:
    poll = DiscoverySettings().poll_interval
    print()
    print(f"dashboard -> /ws delay (dashboard polled here every {DASH_POLL * 1000:.0f} ms; "
          f"CastRay's discovery polls each dashboard every {poll:g} s, CASTRAY_POLL_INTERVAL)")
    header = f"{'event':<16}{'n':>3}{'median':>10}{'max':>10}   " + "   ".join(
        f"target {k}" for k in TARGETS)
    print(header)
    for name, xs in (("worker joins", joined), ("SIGTERM -> DEAD", died)):
        if not xs:
            continue
        med, mx = statistics.median(xs), max(xs)
        verdict = "   ".join(f"{t:>5.1f} s {'met' if mx <= t else 'MISSED':<6}" for t in TARGETS.values())
        print(f"{name:<16}{len(xs):>3}{med * 1000:>8.0f} ms{mx * 1000:>7.0f} ms   {verdict}")
        print(f"{'':<16}   each: {', '.join(f'{x * 1000:.0f}' for x in xs)} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joins", type=int, default=5)
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="castray-live-"))
    namespace = f"bench-live-{uuid.uuid4().hex[:8]}"
    head = local_ray.start_head(tempfile.mkdtemp(prefix="castray-ray-"), num_cpus=1, die_with_parent=True)
    workers: list[local_ray.RayNode] = []
    up: subprocess.Popen[bytes] | None = None
    try:
        up, port = start_up([head], work, namespace)
        print(f"Ray head: dashboard {head.dashboard_url}; castray up: http://127.0.0.1:{port}", flush=True)
        joined, died = asyncio.run(measure(head, f"http://127.0.0.1:{port}", args.joins,
                                           min(args.kills, args.joins), workers))
        report(joined, died)
    finally:
        if up is not None:
            stop_up(up)
        for worker in workers:
            worker.stop()
        head.stop()
        drop_namespace(redis_url(), namespace)
        print(f"(total {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
