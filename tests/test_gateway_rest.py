"""REST over the real gateway and Redis: status, nodes, clusters, external-info, health, the root redirect."""

from __future__ import annotations

import pytest

from castray.shared.events import NodeInfo
from tests.support.gateway import ViewWriter, cluster, node

pytest_plugins = ("tests.support.gateway_fixtures",)  # make_gateway, gateway, view


async def two_clusters(view: ViewWriter) -> dict[str, NodeInfo]:
    """c1 (external, alive: head + worker + a dead worker), c2 (local, alive: head), c3 (external, lost)."""
    nodes = {
        "c1-h": node("h", "c1", head=True),
        "c1-w": node("w", "c1", cpu=4.0),
        "c1-d": node("d", "c1", state="DEAD"),
        "c2-h": node("h", "c2", head=True, external=False),
        "c3-h": node("h", "c3", head=True, state="UNREACHABLE"),
    }
    await view.reset(
        epoch="e1",
        clusters=[
            cluster("c1", port=8265, first_seen=1.0),
            cluster("c2", port=8300, found_by="local", first_seen=0.5),
            cluster("c3", port=8266, state="lost", first_seen=2.0),
        ],
        nodes=list(nodes.values()),
    )
    return nodes


async def test_status_counts_every_node_of_every_cluster(gateway, view: ViewWriter) -> None:
    await two_clusters(view)
    resp = await gateway.get("/api/status")
    assert resp.status == 200
    body = await resp.json()
    # The DEAD node is listed (with its reason) but not counted: dead_nodes counts it apart.
    assert (body["total_nodes"], body["active_nodes"], body["external_nodes"]) == (4, 3, 3)
    assert body["dead_nodes"] == 1
    assert (body["epoch"], body["version"]) == ("e1", 1)
    by_id = {s["node_id"]: s for s in body["node_statuses"]}
    assert set(by_id) == {"c1-h", "c1-w", "c1-d", "c2-h", "c3-h"}
    assert by_id["c1-w"]["is_running"] is True and by_id["c1-d"]["is_running"] is False
    assert by_id["c1-w"]["node_type"] == "Ray节点" and by_id["c1-w"]["resources"] == {"CPU": 4.0}
    clusters = {c["id"]: c for c in body["clusters"]}
    assert [c["id"] for c in body["clusters"]] == ["c2", "c1", "c3"]  # first seen first
    c1 = clusters["c1"]
    assert (c1["name"], c1["state"], c1["found_by"], c1["address"]) == (
        "ray-c1",
        "alive",
        "external",
        "127.0.0.1:8265",
    )
    assert (c1["node_count"], c1["alive_node_count"], c1["dead_node_count"]) == (2, 2, 1)
    assert clusters["c2"]["external"] is False and clusters["c3"]["state"] == "lost"
    assert body["ray_cluster"] == {
        "cluster_resources": {"CPU": 8.0},
        "available_resources": {"CPU": 8.0},  # the view knows totals only: said by the next key
        "available_resources_known": False,
        "memory_unit": "MiB",
        "nodes": 3,
        "clusters": 3,
        "alive_clusters": 2,
    }


async def test_status_of_an_empty_view(gateway) -> None:
    body = await (await gateway.get("/api/status")).json()
    assert (body["total_nodes"], body["active_nodes"], body["node_statuses"], body["clusters"]) == (
        0,
        0,
        [],
        [],
    )
    assert (body["epoch"], body["version"]) == ("", 0)
    assert body["discovery_leader"] is None  # no discovery replica leads


async def test_status_names_the_discovery_replica_that_leads(gateway, redis_client, names) -> None:
    await redis_client.set(names.discovery_leader, "discovery@host-a:41:abc123", px=10_000)
    body = await (await gateway.get("/api/status")).json()
    assert body["discovery_leader"] == "discovery@host-a:41:abc123"


async def test_external_info_has_the_manuals_shape(gateway, view: ViewWriter) -> None:
    nodes = await two_clusters(view)
    body = await (await gateway.get("/api/cluster/external-info")).json()
    assert body["is_connected"] is True
    assert (
        body["connected_cluster"] == "127.0.0.1:8265"
    )  # c1: the first alive external cluster (not local c2)
    assert [c["id"] for c in body["connected_clusters"]] == ["c1"]
    # The seed's external nodes are those that count: not the DEAD c1-d (in /api/nodes, with its reason).
    assert set(body["external_nodes"]) == {"c1-h", "c1-w", "c3-h"}
    w = body["external_nodes"]["c1-w"]
    assert (w["id"], w["address"], w["status"], w["type"], w["cluster_source"]) == (
        "c1-w",
        "127.0.0.1",
        "alive",
        "external",
        "127.0.0.1:8265",
    )
    assert w["last_seen"] == nodes["c1-w"].last_seen


async def test_external_info_when_nothing_is_connected(gateway, view: ViewWriter) -> None:
    await view.reset(
        epoch="e1", clusters=[cluster("c2", found_by="local")], nodes=[node("h", "c2", external=False)]
    )
    body = await (await gateway.get("/api/cluster/external-info")).json()
    assert body == {
        "is_connected": False,
        "connected_cluster": None,
        "connected_clusters": [],
        "external_nodes": {},
    }


async def test_nodes_external_has_the_seeds_shape_and_is_not_taken_by_node_id(
    gateway, view: ViewWriter
) -> None:
    await two_clusters(view)
    resp = await gateway.get("/api/nodes/external")
    assert resp.status == 200
    body = await resp.json()
    assert body["success"] is True and body["count"] == 3  # not the DEAD c1-d
    assert sorted(n["id"] for n in body["external_nodes"]) == ["c1-h", "c1-w", "c3-h"]
    assert {n["type"] for n in body["external_nodes"]} == {"external"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["c1-d", "c1-h", "c1-w", "c2-h", "c3-h"]),
        ("?cluster=c1", ["c1-d", "c1-h", "c1-w"]),
        ("?state=alive", ["c1-h", "c1-w", "c2-h"]),
        ("?state=DEAD", ["c1-d"]),
        ("?external=false", ["c2-h"]),
        ("?external=true&state=ALIVE", ["c1-h", "c1-w"]),
        ("?cluster=nope", []),
    ],
)
async def test_node_filters(gateway, view: ViewWriter, query: str, expected: list[str]) -> None:
    await two_clusters(view)
    resp = await gateway.get(f"/api/nodes{query}")
    assert resp.status == 200
    body = await resp.json()
    assert sorted(n["id"] for n in body["nodes"]) == expected and body["count"] == len(expected)


@pytest.mark.parametrize("query", ["?state=sleeping", "?external=maybe"])
async def test_bad_node_filters_are_400(gateway, query: str) -> None:
    resp = await gateway.get(f"/api/nodes{query}")
    assert resp.status == 400
    assert (await resp.json())["code"] == "bad_filter"


async def test_one_node_and_unknown_node(gateway, view: ViewWriter) -> None:
    nodes = await two_clusters(view)
    body = await (await gateway.get("/api/nodes/c1-w")).json()
    assert body["node"] == nodes["c1-w"].model_dump(mode="json")
    resp = await gateway.get("/api/nodes/nope")
    assert resp.status == 404
    assert (await resp.json())["code"] == "unknown_node"


async def test_clusters_and_one_cluster(gateway, view: ViewWriter) -> None:
    await two_clusters(view)
    body = await (await gateway.get("/api/clusters")).json()
    assert [c["id"] for c in body["clusters"]] == ["c2", "c1", "c3"] and body["count"] == 3
    one = await (await gateway.get("/api/clusters/c1")).json()
    assert one["cluster"]["id"] == "c1" and one["cluster"]["node_count"] == 2
    assert sorted(n["id"] for n in one["nodes"]) == ["c1-d", "c1-h", "c1-w"]
    resp = await gateway.get("/api/clusters/nope")
    assert resp.status == 404
    assert (await resp.json())["code"] == "unknown_cluster"


async def test_rest_follows_the_view(gateway, view: ViewWriter) -> None:
    await two_clusters(view)
    await view.node(node("new", "c1"))
    await view.removed(cluster("c3"))
    await view.node(node("h", "c3"), "removed")
    body = await (await gateway.get("/api/status")).json()
    assert body["total_nodes"] == 4 and body["version"] == 4
    assert "c1-new" in {s["node_id"] for s in body["node_statuses"]}
    assert [c["id"] for c in body["clusters"]] == ["c2", "c1"]


async def test_health_and_root(gateway) -> None:
    for path in ("/health", "/api/health"):
        resp = await gateway.get(path)
        assert resp.status == 200
        body = await resp.json()
        assert body["status"] == "ok" and body["redis"] == "ok" and body["events_subscribed"] is True
    resp = await gateway.get("/", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/ui"


async def test_redis_down_is_503_and_the_gateway_recovers_nothing_else_breaks(make_gateway) -> None:
    """A gateway pointed at a closed port answers 503 JSON, not 500, on health and on view reads."""
    client = await make_gateway(redis_url="redis://127.0.0.1:1/0", wait_subscribed=False)
    resp = await client.get("/api/health")
    assert resp.status == 503
    assert (await resp.json())["redis"] == "down"
    for path in ("/api/status", "/api/nodes", "/api/clusters", "/api/cluster/external-info"):
        resp = await client.get(path)
        assert resp.status == 503, path
        assert (await resp.json())["code"] == "redis_unavailable"
