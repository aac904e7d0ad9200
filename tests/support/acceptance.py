"""Helpers of the acceptance tests (no tests here): a ``castray up`` subprocess beside real Ray heads, kept
for a whole module, and small REST / WebSocket helpers that wait for conditions, never for a fixed time.

Isolation as in ``tests/test_up.py`` (whose `Up` this reuses): a namespace, data dir and gateway port of
its own; discovery scans only the dashboard ports of the test's own heads and reads only their temp dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from castray import local_ray
from tests.conftest import REDIS_URL, drop_namespace
from tests.support.gateway import recv
from tests.support.up import Up, free_port, get_json
from tests.support.waiting import wait_for_blocking

__all__ = ["Up", "free_port", "get_json", "running_up", "request", "WsWatch", "dashboard_view",
           "view_of"]

DEADLINE = 90.0  # generous: a busy 2-core machine


def up_env(namespace: str, data_dir: Path, heads: list[local_ray.RayNode], **extra: str) -> dict[str, str]:
    """The environment of a ``castray up`` that sees exactly ``heads`` (a scan of their dashboard ports)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASTRAY_") and k != "RAY_ADDRESS"}
    temp_dir = heads[0].temp_dir if heads else str(data_dir / "no-ray")
    Path(temp_dir).mkdir(parents=True, exist_ok=True)
    env.update({
        "CASTRAY_NAMESPACE": namespace,
        "CASTRAY_REDIS_URL": REDIS_URL,
        "CASTRAY_DATA_DIR": str(data_dir),
        "CASTRAY_SCAN_HOSTS": "127.0.0.1",
        "CASTRAY_SCAN_PORTS": ",".join(str(h.dashboard_port) for h in heads),  # never 8265-8269
        "CASTRAY_RAY_TEMP_DIRS": temp_dir,
        "RAY_TMPDIR": temp_dir,
        "CASTRAY_RAY_DASHBOARD_PORT": str(free_port()),  # a head `up` starts never takes 8265
        "CASTRAY_LOG_LEVEL": "INFO",
        **extra,
    })
    return env


@contextlib.contextmanager
def running_up(data_dir: Path, heads: list[local_ray.RayNode], *args: str, **extra: str) -> Iterator[Up]:
    """``castray up`` in a namespace of its own; stopped (its tree killed) and the namespace deleted after."""
    namespace = f"test-acc-{uuid.uuid4().hex[:10]}"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    out_path, err_path = data_dir / "up.out", data_dir / "up.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "castray.cli", "up", "--port", str(port), *args],
                                env=up_env(namespace, data_dir / "data", heads, **extra), stdout=out,
                                stderr=err, stdin=subprocess.DEVNULL)
    up = Up(proc, port, out_path, err_path)
    try:
        wait_for_blocking(lambda: "CastRay is up: " in up.stdout() or proc.poll() is not None,
                          "castray up to start")
        assert proc.poll() is None, up.stderr()
        yield up
    finally:
        if proc.poll() is None:
            alive, _ = up.stop()
            for p in alive:
                with contextlib.suppress(psutil.Error):
                    p.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        drop_namespace(namespace)


async def request(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    """(status, JSON body) of one request; a body that is not JSON fails the test."""
    async with session.request(method, url, timeout=aiohttp.ClientTimeout(total=30), **kw) as resp:
        text = await resp.text()
        assert resp.content_type == "application/json", f"{method} {url}: {resp.status} {text[:300]}"
        return resp.status, json.loads(text)


class WsWatch:
    """A ``/ws`` client: its snapshot, then every message it receives. A task reads the socket all along,
    so the client answers the gateway's pings however long a test waits for something else."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, snapshot: dict[str, Any]) -> None:
        self.ws = ws
        self.snapshot = snapshot
        self.seen: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._ended: BaseException | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, base: str, topics: str = "clusters,nodes") -> WsWatch:
        ws = await session.ws_connect(f"{base}/ws?topics={topics}", heartbeat=None)
        first = await recv(ws, deadline=30)
        assert first["type"] == "snapshot", first
        return cls(ws, first)

    async def _read(self) -> None:
        try:
            while True:
                self.seen.append(await recv(self.ws, deadline=3600))
                self._arrived.set()
        except BaseException as e:  # the socket closed, or the test closed us: `until` says which
            self._ended = e
            self._arrived.set()
            if isinstance(e, asyncio.CancelledError):
                raise

    async def until(self, pred: Any, what: str, deadline: float = DEADLINE) -> dict[str, Any]:
        """The first message (already seen or to come) matching ``pred``."""
        end, checked = time.monotonic() + deadline, 0
        while True:
            for msg in self.seen[checked:]:
                if pred(msg):
                    return msg
            checked = len(self.seen)
            left = end - time.monotonic()
            if left <= 0 or self._ended is not None:
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        why = f" (the socket ended: {self._ended!r})" if self._ended is not None else ""
        raise AssertionError(f"no {what} on /ws within {deadline:.0f} s{why}; saw "
                             f"{[(m.get('type'), m.get('change')) for m in self.seen[-20:]]}")

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.ws.close()


def node_event(ray_node_id: str | None, change: str | None = None, state: str | None = None) -> Any:
    """A predicate: a ``node-changed`` of that Ray node (with that change / state)."""
    def pred(msg: dict[str, Any]) -> bool:
        if msg.get("type") != "node-changed":
            return False
        record = msg.get("node") or {}
        if record.get("ray_node_id") != ray_node_id and not str(msg.get("id", "")).endswith(
                f"-{(ray_node_id or '')[:12]}"):
            return False
        return ((change is None or msg.get("change") == change)
                and (state is None or record.get("state") == state))
    return pred


def dashboard_view(head: local_ray.RayNode) -> dict[str, str]:
    """What the cluster's dashboard reports: Ray node id -> state."""
    assert head.dashboard_port is not None
    return {r["node_id"]: r["state"] for r in local_ray.list_nodes(head.dashboard_url, timeout=5)}


def view_of(up: Up, cluster_id: str) -> dict[str, str]:
    """What CastRay's view holds for one cluster: Ray node id -> state."""
    body = get_json(f"{up.base}/api/nodes?cluster={cluster_id}")
    return {n["ray_node_id"]: n["state"] for n in body["nodes"]}


def cluster_id_of(up: Up, head: local_ray.RayNode) -> str | None:
    """The id CastRay gave the cluster of ``head`` (by its dashboard address), once it is in the view."""
    for c in get_json(f"{up.base}/api/clusters")["clusters"]:
        if c.get("address") == f"127.0.0.1:{head.dashboard_port}":
            return str(c["id"])
    return None
