"""``castray transfer --join-ray``: the worker's host joins the cluster as a node first (what each transfer
container does, since a Ray driver needs a raylet on its own host), and leaves it on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from castray import local_ray
from tests.test_up import wait_for


def test_transfer_joins_the_cluster_and_leaves_it(own_ray_head: local_ray.RayNode, namespace: str,
                                                  redis_url: str, tmp_path: Path) -> None:
    ray_head = own_ray_head  # not the session head: the node joining and leaving would show in others' tests
    before = {r["node_id"] for r in local_ray.list_nodes(ray_head.dashboard_url)}
    env = {**os.environ, "CASTRAY_REDIS_URL": redis_url, "CASTRAY_DATA_DIR": str(tmp_path)}
    err_path = tmp_path / "transfer.err"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "castray.cli", "transfer", "--namespace", namespace,
                                 "--join-ray", ray_head.gcs_address], env=env, stdout=err, stderr=err)
    try:
        joined = wait_for(lambda: [r for r in local_ray.list_nodes(ray_head.dashboard_url)
                                if r["node_id"] not in before and r["state"] == "ALIVE"], "the joined node")
        assert joined[0]["resources_total"].get("CPU", 0) == 0
        assert f"joined the Ray cluster at {ray_head.gcs_address}" in err_path.read_text()
        wait_for(lambda: "serving" in err_path.read_text(), "the transfer worker to serve")
        tree = psutil.Process(proc.pid).children(recursive=True)
        assert "raylet" in {p.name() for p in tree}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        _gone, alive = psutil.wait_procs(tree, timeout=10)
        assert alive == [], f"left behind: {alive}"
        # It left the cluster cleanly: Ray saw it go at once (a killed node shows DEAD only after ~15 s).
        node_id = joined[0]["node_id"]
        wait_for(lambda: [r for r in local_ray.list_nodes(ray_head.dashboard_url)
                       if r["node_id"] == node_id and r["state"] == "DEAD"], "the node to be DEAD", 10)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                for p in psutil.Process(proc.pid).children(recursive=True):
                    p.kill()
            proc.kill()
            proc.wait(timeout=10)
