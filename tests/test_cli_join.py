"""``castray transfer --join-ray``: the worker's host joins each cluster as a node first (what each transfer
container does, since a Ray driver needs a raylet on its own host; and what reaches clusters on other
machines), and leaves them on SIGTERM."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from castray import local_ray
from tests.support.ray_nodes import own_head
from tests.support.waiting import wait_for_blocking


@pytest.fixture
def other_head() -> Iterator[local_ray.RayNode]:
    """A second cluster of this test's own."""
    with own_head() as head:
        yield head


def _start(namespace: str, redis_url: str, tmp_path: Path, join: str) -> tuple[subprocess.Popen[bytes], Path]:
    env = {**os.environ, "CASTRAY_REDIS_URL": redis_url, "CASTRAY_DATA_DIR": str(tmp_path)}
    err_path = tmp_path / "transfer.err"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "castray.cli", "transfer", "--namespace", namespace,
                                 "--join-ray", join], env=env, stdout=err, stderr=err)
    return proc, err_path


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            for p in psutil.Process(proc.pid).children(recursive=True):
                p.kill()
        proc.kill()
        proc.wait(timeout=10)


def _new_alive(head: local_ray.RayNode, before: set[str]) -> list[dict[str, Any]]:
    rows = local_ray.list_nodes(head.dashboard_url)
    return [r for r in rows if r["node_id"] not in before and r["state"] == "ALIVE"]


def _dead(head: local_ray.RayNode, node_id: str) -> bool:
    rows = local_ray.list_nodes(head.dashboard_url)
    return any(r["node_id"] == node_id and r["state"] == "DEAD" for r in rows)


def test_transfer_joins_each_cluster_and_leaves_them(own_ray_head: local_ray.RayNode,
                                                     other_head: local_ray.RayNode, namespace: str,
                                                     redis_url: str, tmp_path: Path) -> None:
    # Not the session head: a node joining and leaving would show in others' tests.
    heads = [own_ray_head, other_head]
    before = {h.gcs_address: {r["node_id"] for r in local_ray.list_nodes(h.dashboard_url)} for h in heads}
    proc, err_path = _start(namespace, redis_url, tmp_path, ",".join(h.gcs_address for h in heads))
    try:
        joined: dict[str, dict[str, Any]] = {}
        for head in heads:
            joined[head.gcs_address] = wait_for_blocking(
                functools.partial(_new_alive, head, before[head.gcs_address]),
                f"the node joined to {head.gcs_address}")[0]
            assert joined[head.gcs_address]["resources_total"].get("CPU", 0) == 0
            assert f"joined the Ray cluster at {head.gcs_address}" in err_path.read_text()
        wait_for_blocking(lambda: "serving" in err_path.read_text(), "the transfer worker to serve")
        tree = psutil.Process(proc.pid).children(recursive=True)
        assert [p.name() for p in tree].count("raylet") == 2  # one raylet per cluster
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        _gone, alive = psutil.wait_procs(tree, timeout=10)
        assert alive == [], f"left behind: {alive}"
        # It left each cluster cleanly: Ray saw it go at once (a killed node shows DEAD only after ~15 s).
        for head in heads:
            wait_for_blocking(functools.partial(_dead, head, joined[head.gcs_address]["node_id"]),
                              f"the node in {head.gcs_address} to be DEAD", deadline=10)
    finally:
        _stop(proc)


def test_a_cluster_that_cannot_be_joined_leaves_the_others(own_ray_head: local_ray.RayNode, namespace: str,
                                                           redis_url: str, tmp_path: Path) -> None:
    before = {r["node_id"] for r in local_ray.list_nodes(own_ray_head.dashboard_url)}
    proc, err_path = _start(namespace, redis_url, tmp_path, f"{own_ray_head.gcs_address}, 127.0.0.1:no-port")
    try:
        assert proc.wait(timeout=120) == 1
        err = err_path.read_text()
        assert f"joined the Ray cluster at {own_ray_head.gcs_address}" in err
        assert "could not join the Ray cluster at 127.0.0.1:no-port" in err
        [node] = [r for r in local_ray.list_nodes(own_ray_head.dashboard_url) if r["node_id"] not in before]
        # Left at once after joining: Ray may see it go only at its next health check (~15 s).
        wait_for_blocking(lambda: _dead(own_ray_head, node["node_id"]), "the joined node to be left",
                          deadline=60)
    finally:
        _stop(proc)
