"""Dead replicas leave the view (issue 11): a transfer worker's node (``castray transfer --join-ray``, a
0-CPU raylet, as in each transfer container) that stops, by SIGTERM or by a kill of its whole process
tree (``docker kill``), ends DEAD in the view with the reason Ray gives; it is still listed, but no longer
counted in ``/api/status`` and never taken as a transfer target.

Real Ray (a head of this test's own, whose GCS checks health every 0.5 s so that a killed node is found
dead sooner), the real discovery and registry, the real gateway; every process is stopped by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp.test_utils import TestClient

from castray import local_ray
from tests.support.gateway_files import gateway
from tests.support.live_view import live_view
from tests.support.ray_nodes import own_head
from tests.support.waiting import wait_for

DEADLINE = 120.0  # a busy 2-core machine: we wait for conditions, never assert on time
# What Ray 2.60 says of a node whose `ray start --block` got SIGTERM and drained it (a raylet SIGTERM'd by
# itself says "Expected termination: received SIGTERM"; one killed, "Unexpected termination: health check
# failed due to missing too many heartbeats").
SIGTERMED = "Terminated due to preemption: Node received SIGTERM; draining before shutdown."
FAST_HEALTH_CHECKS = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "500",
                      "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "4"}


@pytest.fixture
def quick_head() -> Iterator[local_ray.RayNode]:
    with own_head(env=FAST_HEALTH_CHECKS) as head:
        yield head


class JoinedWorker:
    """``castray transfer --join-ray <head>``: a transfer worker whose host joins the cluster first."""

    def __init__(self, head: local_ray.RayNode, namespace: str, redis_url: str, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CASTRAY_REDIS_URL": redis_url, "CASTRAY_DATA_DIR": str(root)}
        self.err = root / "transfer.err"
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "castray.cli", "transfer", "--namespace", namespace, "--join-ray",
                 head.gcs_address], env=env, stdout=err, stderr=err, start_new_session=True)

    def ray_node_id(self) -> str | None:
        text = self.err.read_text(errors="replace")
        marker = " as node "
        for line in text.splitlines():
            if "joined the Ray cluster" in line and marker in line:
                return line.rsplit(marker, 1)[1].strip()
        return None

    def tree(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            return [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        return []

    def kill_all(self) -> None:
        """SIGKILL the worker and everything it started at once, as ``docker kill`` ends a container."""
        for p in self.tree():
            with contextlib.suppress(psutil.Error):
                p.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


@pytest.fixture
def joined_workers(namespace: str, redis_url: str, tmp_path: Path) -> Iterator[list[JoinedWorker]]:
    started: list[JoinedWorker] = []
    yield started
    for worker in started:
        worker.kill_all()


async def _json(client: TestClient, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.request(method, path, **kw)
    return resp.status, dict(await resp.json())


async def _node(client: TestClient, ray_node_id: str) -> dict[str, Any] | None:
    _, body = await _json(client, "GET", "/api/nodes")
    return next((n for n in body["nodes"] if n["ray_node_id"] == ray_node_id), None)


async def test_a_stopped_or_killed_replica_is_dead_with_a_reason_not_counted_not_a_target(
        quick_head: local_ray.RayNode, joined_workers: list[JoinedWorker], namespace: str, redis_url: str,
        tmp_path: Path) -> None:
    for name in ("stopped", "killed"):
        joined_workers.append(JoinedWorker(quick_head, namespace, redis_url, tmp_path / name))
    stopped, killed = joined_workers
    async with live_view(namespace, redis_url, [quick_head.dashboard_url]), \
            gateway(namespace, tmp_path / "gateway") as client:
        ids: dict[str, str] = {}
        for name, worker in (("stopped", stopped), ("killed", killed)):
            rid = await wait_for(lambda w=worker: w.ray_node_id(), deadline=DEADLINE, what=f"{name} to join")

            async def alive(rid: str = rid) -> dict[str, Any] | None:
                node = await _node(client, rid)
                return node if node and node["state"] == "ALIVE" else None
            node = await wait_for(alive, f"the {name} replica's node ALIVE in the view", deadline=DEADLINE)
            assert node["resources"].get("CPU", 0) == 0
            ids[name] = node["id"]
        _, status = await _json(client, "GET", "/api/status")
        assert (status["total_nodes"], status["active_nodes"], status["dead_nodes"]) == (3, 3, 0)
        head_id = next(n["node_id"] for n in status["node_statuses"] if n["is_head"])

        stopped.proc.send_signal(signal.SIGTERM)  # `docker stop`
        assert await asyncio.to_thread(stopped.proc.wait, 60) == 0
        killed.kill_all()  # `docker kill`

        async def dead(name: str) -> dict[str, Any] | None:
            _, body = await _json(client, "GET", f"/api/nodes/{ids[name]}")
            node = body["node"]
            return node if node["state"] == "DEAD" else None
        gone = await wait_for(lambda: dead("stopped"), deadline=DEADLINE, what="the stopped replica DEAD")
        assert gone["state_message"] == SIGTERMED  # it left its cluster: no heartbeat timeout
        crashed = await wait_for(lambda: dead("killed"), deadline=DEADLINE, what="the killed replica DEAD")
        assert crashed["state_message"].startswith("Unexpected termination"), crashed

        _, status = await _json(client, "GET", "/api/status")
        assert (status["total_nodes"], status["active_nodes"], status["dead_nodes"]) == (1, 1, 2)
        listed = {s["node_id"]: s for s in status["node_statuses"]}
        assert listed[ids["stopped"]]["is_running"] is False
        assert listed[ids["stopped"]]["state_message"] == SIGTERMED
        [cluster] = status["clusters"]
        assert (cluster["node_count"], cluster["alive_node_count"], cluster["dead_node_count"]) == (1, 1, 2)

        for mode, targets in (("unicast", [ids["stopped"]]), ("multicast", [head_id, ids["killed"]])):
            code, err = await _json(client, "POST", "/api/transfers", json={
                "source": {"generate": {"size": 1024}}, "mode": mode, "targets": targets})
            assert code == 409 and err["code"] == "node_not_alive", err
            down = targets[-1]
            assert err["nodes"] == [down] and f"{down}: node is DEAD (" in err["error"], err
        code, queued = await _json(client, "POST", "/api/transfers", json={
            "source": {"generate": {"size": 1024}}, "mode": "broadcast"})
        assert code == 202 and queued["targets"] == [head_id], queued
