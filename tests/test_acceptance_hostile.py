"""Acceptance of issue 12, item 4, against ``castray up`` (subprocess): a cluster whose dashboard turns
hostile shows as failing, with the reason, in the view (``/api/clusters``) and on ``/ws``, and the real
cluster beside it stays as it was.

The hostile dashboard runs in this test's event loop: every wait here is asynchronous, so it keeps
answering (a blocking wait would make it a merely silent dashboard).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from castray import local_ray
from castray.client import AsyncClient, GatewayError
from tests.support.acceptance import Up, WsWatch, cluster_id_of, running_up
from tests.support.hostile_dashboard import HostileDashboard
from tests.support.waiting import wait_for_blocking


@pytest.fixture(scope="module")
def up(ray_head: local_ray.RayNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with running_up(tmp_path_factory.mktemp("hostile"), [ray_head]) as started:
        wait_for_blocking(lambda: cluster_id_of(started, ray_head), "the real cluster in the view")
        yield started


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """For the raw /ws frames only (`WsWatch`); the API goes through castray.client."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def api(up: Up) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(up.base, token="") as client:
        yield client


def _lost(cid: str) -> Any:
    return lambda m: m.get("type") == "cluster-lost" and m.get("id") == cid


async def test_a_lying_cluster_is_failing_with_its_reason_in_the_view_and_on_ws(
    up: Up, ray_head: local_ray.RayNode, http: aiohttp.ClientSession, api: AsyncClient,
    hostile: HostileDashboard,
) -> None:
    ws = await WsWatch.open(http, up.base)
    try:
        conn = await api.connect(hostile.url)
        assert conn.success is True, conn
        cid = conn.cluster.id

        hostile.mode = "nested"
        lost = await ws.until(_lost(cid), "the liar's cluster-lost on /ws")
        assert lost["cluster"]["state"] == "lost"
        assert "nested too deeply" in (lost["cluster"].get("error") or ""), lost

        clusters = await api.clusters()
        record = next(c for c in clusters if c.id == cid)
        assert record.state == "lost" and "nested too deeply" in (record.error or ""), record
        real = next(c for c in clusters if c.address == f"127.0.0.1:{ray_head.dashboard_port}")
        assert real.state == "alive"
        info = await api.external_info()
        assert cid not in {c["id"] for c in info["connected_clusters"]}
        assert ray_head.node_id in {n["ray_node_id"] for n in info["external_nodes"].values()
                                    if n["state"] == "ALIVE"}
    finally:
        await ws.close()
        with contextlib.suppress(GatewayError):  # already gone, say: the test's own failure is what counts
            await api.disconnect(hostile.url)
