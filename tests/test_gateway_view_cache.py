"""The view served as a cache would (issue 16): ETag and 304, gzip, server-side pages and filters over a
10k-node view, and one encoding per version shared by every request and WebSocket connect (counted, never
timed). The seed's endpoints keep their bodies: tests/test_gateway_rest.py and test_original_status.py."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from castray.gateway import keys
from castray.shared.events import NodeInfo
from castray.shared.view import node_order
from tests.support.feed import make_cluster, make_node
from tests.support.gateway import ViewWriter, cluster, node, recv

pytest_plugins = ("tests.support.gateway_fixtures",)  # make_gateway, gateway, view

STATES = ("ALIVE", "DEAD", "UNREACHABLE")


async def big_view(view: ViewWriter, *, clusters: int = 20, per_cluster: int = 500) -> list[NodeInfo]:
    """A view of ``clusters * per_cluster`` nodes, written as the registry writes it; states vary."""
    nodes = [make_node(f"c{c}", i, state=STATES[(c * 7 + i) % 3], external=c % 4 != 0)
             for c in range(clusters) for i in range(per_cluster)]
    await view.reset(epoch="big", clusters=[make_cluster(c) for c in range(clusters)], nodes=nodes)
    return nodes


async def get_json(client: TestClient, path: str, **headers: str) -> tuple[int, dict[str, Any], Any]:
    resp = await client.get(path, headers=headers)
    body = await resp.json() if resp.status == 200 else None
    return resp.status, dict(resp.headers), body


async def walk(client: TestClient, query: str, limit: int) -> tuple[list[dict[str, Any]], list[int]]:
    """Every page of ``/api/nodes?{query}``: the nodes in order, and each page's total."""
    got: list[dict[str, Any]] = []
    totals: list[int] = []
    cursor = ""
    while True:
        sep = "&" if query else ""
        status, _, body = await get_json(client, f"/api/nodes?{query}{sep}limit={limit}{cursor}")
        assert status == 200
        assert body["count"] == len(body["nodes"]) <= limit
        got += body["nodes"]
        totals.append(body["total"])
        if body["next_cursor"] is None:
            return got, totals
        cursor = f"&cursor={body['next_cursor']}"


@pytest.mark.parametrize("path", ["/api/nodes", "/api/nodes?state=ALIVE", "/api/nodes/external",
                                  "/api/status", "/api/clusters", "/api/clusters/c1",
                                  "/api/cluster/external-info"])
async def test_an_unchanged_version_is_304_and_a_change_a_new_etag(gateway, view: ViewWriter,
                                                                   path: str) -> None:
    await view.reset(epoch="e1", clusters=[cluster("c1")], nodes=[node("h", head=True)])
    first = await gateway.get(path)
    assert first.status == 200
    etag = first.headers["ETag"]
    again = await gateway.get(path, headers={"If-None-Match": etag})
    assert again.status == 304 and again.headers["ETag"] == etag and await again.read() == b""
    await view.node(node("w"))
    changed = await gateway.get(path, headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag
    assert (await gateway.get(path, headers={"If-None-Match": changed.headers["ETag"]})).status == 304


async def test_etags_differ_by_shape(gateway, view: ViewWriter) -> None:
    await view.reset(epoch="e1", clusters=[cluster("c1")], nodes=[node("h", head=True)])
    tags = {(await gateway.get(p)).headers["ETag"]
            for p in ("/api/nodes", "/api/nodes?state=DEAD", "/api/nodes?limit=1", "/api/status")}
    assert len(tags) == 4


async def test_gzip_when_accepted_and_the_same_json_either_way(gateway, view: ViewWriter) -> None:
    await big_view(view, clusters=2, per_cluster=50)
    plain = await gateway.get("/api/nodes", headers={"Accept-Encoding": "identity"}, auto_decompress=False)
    assert "Content-Encoding" not in plain.headers
    zipped = await gateway.get("/api/nodes", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert zipped.headers["Content-Encoding"] == "gzip" and zipped.headers["Vary"] == "Accept-Encoding"
    raw = await plain.read()
    assert gzip.decompress(await zipped.read()) == raw
    assert zipped.headers["ETag"] == plain.headers["ETag"]
    refused = await gateway.get("/api/nodes", headers={"Accept-Encoding": "gzip;q=0"}, auto_decompress=False)
    assert "Content-Encoding" not in refused.headers
    assert json.loads(raw)["count"] == 100


async def test_pages_and_filters_over_a_10k_node_view(gateway, view: ViewWriter) -> None:
    nodes = await big_view(view)
    assert len(nodes) == 10_000
    everything = (await get_json(gateway, "/api/nodes"))[2]
    expected = [n.id for n in sorted(nodes, key=node_order)]
    assert [n["id"] for n in everything["nodes"]] == expected and everything["count"] == 10_000
    assert "total" not in everything and "next_cursor" not in everything  # the unpaged body is as before
    paged, totals = await walk(gateway, "", 777)
    assert paged == everything["nodes"] and set(totals) == {10_000} and len(totals) == 13
    for query, keep in [("cluster=c3", lambda n: n.cluster_id == "c3"),
                        ("state=dead", lambda n: n.state == "DEAD"),
                        ("cluster=c4&state=ALIVE&external=false",
                         lambda n: n.cluster_id == "c4" and n.state == "ALIVE" and not n.external)]:
        want = [n.id for n in sorted(nodes, key=node_order) if keep(n)]
        got, totals = await walk(gateway, query, 250)
        assert [n["id"] for n in got] == want and set(totals) == {len(want)}, query
    slim, _ = await walk(gateway, "fields=state,cluster_id&cluster=c9", 300)
    assert slim == [{"id": n.id, "cluster_id": n.cluster_id, "state": n.state}
                    for n in sorted(nodes, key=node_order) if n.cluster_id == "c9"]


async def test_a_cursor_survives_changes_before_it(gateway, view: ViewWriter) -> None:
    nodes = await big_view(view, clusters=2, per_cluster=10)
    first = (await get_json(gateway, "/api/nodes?limit=5"))[2]
    ordered = sorted(nodes, key=node_order)
    await view.node(ordered[0], "removed")  # before the cursor: the next page does not shift
    second = (await get_json(gateway, f"/api/nodes?limit=5&cursor={first['next_cursor']}"))[2]
    assert [n["id"] for n in second["nodes"]] == [n.id for n in ordered[5:10]]
    assert second["total"] == 19 and second["version"] == first["version"] + 1


@pytest.mark.parametrize("query", ["limit=0", "limit=x", "limit=10001", "cursor=bm9wZQ", "cursor=%%%",
                                   "fields=id,nope"])
async def test_bad_pages_are_400(gateway, query: str) -> None:
    resp = await gateway.get(f"/api/nodes?{query}")
    assert resp.status == 400
    assert (await resp.json())["code"] in ("bad_page", "bad_cursor", "bad_fields")


async def test_one_encoding_per_version_for_n_requests_and_n_connects(make_gateway: Any,
                                                                       view: ViewWriter) -> None:
    gateway = await make_gateway()
    cache = gateway.server.app[keys.VIEW_CACHE]
    await big_view(view, clusters=4, per_cluster=250)
    reads = cache.snapshots + cache.catch_ups
    builds = cache.body_builds
    bodies = await asyncio.gather(*(gateway.get("/api/nodes?state=ALIVE") for _ in range(20)))
    texts = {await b.read() for b in bodies}
    assert len(texts) == 1
    assert cache.body_builds == builds + 1 and cache.snapshots + cache.catch_ups <= reads + 1
    sockets = [await gateway.ws_connect("/ws?topics=clusters,nodes") for _ in range(20)]
    try:
        snaps = [await recv(ws) for ws in sockets]
    finally:
        for ws in sockets:
            await ws.close()
    assert all(s["type"] == "snapshot" and len(s["nodes"]) == 1000 for s in snaps)
    assert cache.body_builds == builds + 2  # one snapshot message for the twenty connects
    await view.node(make_node("c1", 7, state="DEAD"), "updated")
    snapshots = cache.snapshots
    body = (await get_json(gateway, "/api/nodes?state=DEAD"))[2]
    assert "c1-n0007" in {n["id"] for n in body["nodes"]}
    assert cache.snapshots == snapshots  # the new version came from the log: one record re-encoded


async def test_status_is_built_once_per_version_for_n_requests(make_gateway: Any, view: ViewWriter) -> None:
    gateway = await make_gateway()
    await big_view(view, clusters=2, per_cluster=100)
    status = gateway.server.app[keys.HUB].status
    first = await (await gateway.get("/api/status")).read()
    builds, body_builds = status.builds, gateway.server.app[keys.VIEW_CACHE].body_builds
    again = await asyncio.gather(*(gateway.get("/api/status") for _ in range(10)))
    assert {await r.read() for r in again} == {first}
    assert status.builds == builds and gateway.server.app[keys.VIEW_CACHE].body_builds == body_builds
    assert json.loads(first)["total_nodes"] == len([s for s in json.loads(first)["node_statuses"]
                                                    if s["state"] != "DEAD"])


async def test_metrics_count_what_the_view_cache_built(gateway, view: ViewWriter) -> None:
    await view.reset(epoch="e1", clusters=[cluster("c1")], nodes=[node("h", head=True)])
    for _ in range(3):
        assert (await gateway.get("/api/nodes")).status == 200
    text = await (await gateway.get("/metrics")).text()
    cache = gateway.server.app[keys.VIEW_CACHE]
    assert f'castray_gateway_view_cache_builds{{kind="body"}} {float(cache.body_builds)}' in text
    assert cache.body_builds >= 1
