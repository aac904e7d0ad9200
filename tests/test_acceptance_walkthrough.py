"""Acceptance: the seed's walkthrough (DESIGN.md, steps 1-6), as written, against ``castray up`` run as a
subprocess beside a real Ray head started by another process (the session's head, on free ports).

Step 7's "CastRay starts its own head when it finds no cluster" is `test_up_starts_a_local_head_when_no_
cluster_runs` in tests/test_up.py (not repeated here).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator

import aiohttp
import pytest

from castray import local_ray
from castray.client import AsyncClient
from tests.support.acceptance import Up, WsWatch, node_event, running_up
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def up(ray_head: local_ray.RayNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """Step 2: CastRay started (``castray up``, no --no-ray) beside the running head."""
    with running_up(tmp_path_factory.mktemp("walkthrough"), [ray_head]) as started:
        yield started


async def test_seed_walkthrough_steps_1_to_6(ray_head: local_ray.RayNode, up: Up) -> None:
    address = f"127.0.0.1:{ray_head.dashboard_port}"
    assert ray_head.node_id

    # 1. A head started by another process; `ray status` shows it.
    def ray_status() -> str:
        out = subprocess.run([local_ray.ray_executable(), "status", f"--address={ray_head.gcs_address}"],
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, "RAY_TMPDIR": ray_head.temp_dir})
        return out.stdout if out.returncode == 0 and "Active:" in out.stdout else ""

    # (Ray's autoscaler monitor writes that status a few seconds after the head starts.)
    shown = await wait_for(lambda: asyncio.to_thread(ray_status), deadline=90, what="`ray status`")
    assert f"node_{ray_head.node_id}" in shown, shown

    # 2. CastRay is up on its port, and used that cluster rather than starting its own.
    assert f"CastRay is up: {up.base}/ui" in up.stdout()
    assert "found a running Ray cluster" in up.stderr()
    assert "raylet" not in {p.name() for p in up.tree()}

    # The API through castray.client; the page and the raw /ws frames (the original's events among them,
    # which the SDK's stream does not model) through a plain session.
    async with aiohttp.ClientSession() as http, AsyncClient(up.base, token="") as api:
        # 3. discover-external finds the running cluster.
        found = await api.discover()
        assert found.success is True and found.error is None
        [cluster] = [c for c in found.discovered_clusters if c.dashboard_url == ray_head.dashboard_url]
        cid = cluster.id
        assert found.connected_cluster == address
        assert ray_head.node_id in {n.ray_node_id for n in found.external_nodes.values()}

        # 4. external-info: connected to 127.0.0.1:<port>, external nodes keyed by node id.
        info = await api.external_info()
        assert info["is_connected"] is True
        assert info["connected_cluster"] == address
        assert [c["id"] for c in info["connected_clusters"]] == [cid]
        assert info["external_nodes"] and all(k == n["id"] for k, n in info["external_nodes"].items())
        head = [n for n in info["external_nodes"].values() if n["ray_node_id"] == ray_head.node_id]
        assert len(head) == 1 and head[0]["is_head"] is True and head[0]["status"] == "alive"
        assert head[0]["cluster_source"] == address

        # 5. /api/nodes/external lists them with a count; /api/status counts them among all nodes.
        ext = await api.external_nodes()
        assert ext["success"] is True
        assert ext["count"] == len(ext["external_nodes"]) >= 1
        assert {n["id"] for n in ext["external_nodes"]} == set(info["external_nodes"])
        st = await api.status()
        statuses = {n["node_id"]: n for n in st["node_statuses"]}
        assert set(info["external_nodes"]) <= set(statuses)
        # (DEAD nodes, such as workers earlier tests stopped, are listed but not counted.)
        assert st["total_nodes"] == sum(1 for n in statuses.values() if n["state"] != "DEAD")
        assert st["active_nodes"] == sum(1 for n in statuses.values() if n["state"] == "ALIVE")
        assert st["external_nodes"] == ext["count"]
        assert statuses[head[0]["id"]]["is_running"] is True

        # 6. connect-external by hand (the cluster is known: it stays connected, same id).
        ws = await WsWatch.open(http, up.base)
        try:
            assert ray_head.node_id in {n["ray_node_id"] for n in ws.snapshot["nodes"]}
            conn = await api.connect(address)
            assert conn.success is True and conn.cluster.id == cid, conn

            # disconnect-external: the cluster and its nodes leave the view, with events on /ws.
            gone = await api.disconnect()
            assert gone.success is True and gone.disconnected == [cid]
            await ws.until(node_event(ray_head.node_id, "removed"), "the head's node-changed removed")
            await ws.until(lambda m: m.get("type") == "cluster-removed" and m.get("id") == cid,
                           "cluster-removed")
            await ws.until(lambda m: m.get("type") == "external_cluster_disconnected"
                           and m.get("cluster_id") == cid, "the original's external_cluster_disconnected")
            info = await api.external_info()
            assert info["is_connected"] is False and info["connected_cluster"] is None
            assert info["external_nodes"] == {}
            ext = await api.external_nodes()
            assert ext["count"] == 0 and ext["external_nodes"] == []

            # ... and connect-external brings it back, found by hand, its nodes live on /ws again.
            conn = await api.connect(address)
            assert conn.success is True, conn
            assert conn.cluster.id == cid and conn.cluster.found_by == "manual"
            await ws.until(node_event(ray_head.node_id, "added"), "the head's node-changed added")
            await ws.until(lambda m: m.get("type") == "external_cluster_connected"
                           and m.get("cluster_id") == cid, "the original's external_cluster_connected")
            info = await api.external_info()
            assert info["is_connected"] is True and info["connected_cluster"] == address
        finally:
            await ws.close()

        # The web page at /ui (its live behaviour in a browser: tests/test_ui_live.py).
        async with http.get(f"{up.base}/ui") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            page = await resp.text()
        assert "<html" in page.lower()
        assert (await api.health())["status"] == "ok"
    assert "Traceback" not in up.stderr() and "unhandled error" not in up.stderr(), up.stderr()[-5000:]

