"""Discovery across hosts (issue 15): two Ray clusters on hosts of a network lab (`tests.support.netlab`),
one of them on two hosts, watched from this machine's own namespace by the real discovery, registry and
gateway, with the lab's range allowed by ``CASTRAY_DISCOVERY_ALLOW`` and nothing else.

- found by a scan of the lab's hosts, and by ``connect-external`` to a remote dashboard; every node
  with its host's address;
- refused when the allow-list leaves the lab out;
- a host cut off: its cluster is lost with the reason, its node UNREACHABLE, on REST and /ws, the other
  cluster untouched; healed: both come back, with nothing restarted.

Needs root and iproute2 (CI has both). One lab for the module; every wait is for a condition.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from castray import local_ray
from tests.support import netlab
from tests.support.acceptance import WsWatch, node_event
from tests.support.gateway import recv
from tests.support.gateway_files import gateway
from tests.support.live_view import live_view
from tests.support.waiting import wait_for

DEADLINE = 90.0  # a busy 2-core machine: we wait for conditions, never assert on time
QUICK = {"poll_interval": 0.25, "poll_timeout": 1.0, "lost_after": 3, "scan_interval": 1.0,
         "scan_connect_timeout": 0.5}


@dataclass
class Hosts:
    """The module's lab: cluster A with its head on h1 and a node on h3, cluster B on h2."""

    lab: netlab.Lab
    a: local_ray.RayNode
    a_node: local_ray.RayNode
    b: local_ray.RayNode

    def host_of(self, node: local_ray.RayNode) -> netlab.Host:
        return self.lab.host({id(self.a): "h1", id(self.a_node): "h3", id(self.b): "h2"}[id(node)])

    def scan(self) -> dict[str, Any]:
        """Discovery settings that find both clusters by scanning the lab's hosts, and may reach only the
        lab's range."""
        return {"scan_hosts": [self.lab.host("h1").ip, self.lab.host("h2").ip],
                "scan_ports": f"{self.a.dashboard_port},{self.b.dashboard_port}",
                "discovery_allow": [self.lab.subnet], **QUICK}


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    with netlab.running(3) as lab:
        a = lab.start_head(lab.host("h1"))
        a_node = lab.start_worker(lab.host("h3"), a)
        b = lab.start_head(lab.host("h2"))
        yield Hosts(lab, a, a_node, b)


@asynccontextmanager
async def watching(namespace: str, redis_url: str, data_dir: Path, **discovery: Any
                   ) -> AsyncIterator[TestClient]:
    """Discovery (with ``discovery`` settings) and the registry, and a gateway client on their view, once
    discovery has made its first pass (a scan included)."""
    async with live_view(namespace, redis_url, [], **discovery) as worker, \
            gateway(namespace, data_dir) as client:
        await wait_for(lambda: worker.discoverer is not None and worker.discoverer.passes >= 1,
                       "discovery's first pass", deadline=DEADLINE)
        yield client


async def get(client: TestClient, path: str) -> Any:
    resp = await client.get(path)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def clusters_by_address(client: TestClient) -> dict[str, dict[str, Any]]:
    return {c["address"]: c for c in (await get(client, "/api/clusters"))["clusters"]}


async def nodes_by_ray_id(client: TestClient) -> dict[str, dict[str, Any]]:
    return {n["ray_node_id"]: n for n in (await get(client, "/api/nodes"))["nodes"]}


def address(head: local_ray.RayNode) -> str:
    return f"{head.host}:{head.dashboard_port}"


async def both_found(client: TestClient, hosts: Hosts) -> dict[str, dict[str, Any]]:
    """Every node of both clusters ALIVE in the view, by Ray node id (after both clusters are alive)."""
    async def found() -> dict[str, dict[str, Any]] | None:
        clusters = await clusters_by_address(client)
        nodes = await nodes_by_ray_id(client)
        ready = all(clusters.get(address(h), {}).get("state") == "alive" for h in (hosts.a, hosts.b))
        wanted = [hosts.a.node_id, hosts.a_node.node_id, hosts.b.node_id]
        return nodes if ready and all(nodes.get(str(n), {}).get("state") == "ALIVE" for n in wanted) else None
    found_nodes: dict[str, dict[str, Any]] = await wait_for(found, "both lab clusters and their nodes",
                                                            deadline=DEADLINE, interval=0.2)
    return found_nodes


def assert_placed(nodes: dict[str, dict[str, Any]], hosts: Hosts) -> None:
    """Each node with its own host's address, in the cluster of its head."""
    for node in (hosts.a, hosts.a_node, hosts.b):
        assert nodes[str(node.node_id)]["ip"] == hosts.host_of(node).ip, nodes[str(node.node_id)]
    a, a_node, b = (nodes[str(n.node_id)] for n in (hosts.a, hosts.a_node, hosts.b))
    assert a["cluster_id"] == a_node["cluster_id"] != b["cluster_id"]
    assert a["is_head"] and not a_node["is_head"] and b["is_head"]


async def test_a_scan_of_the_lab_finds_both_clusters_with_each_node_at_its_host(
        hosts: Hosts, namespace: str, redis_url: str, tmp_path: Path) -> None:
    async with watching(namespace, redis_url, tmp_path, **hosts.scan()) as client:
        nodes = await both_found(client, hosts)
        assert_placed(nodes, hosts)
        async def with_gcs() -> dict[str, dict[str, Any]] | None:
            # A cluster's GCS address comes from a later read of its dashboard than its nodes do.
            clusters = await clusters_by_address(client)
            heads = (hosts.a, hosts.b)
            return clusters if all(clusters[address(h)]["gcs_address"] for h in heads) else None

        clusters = await wait_for(with_gcs, "both lab clusters' GCS addresses")
        for head in (hosts.a, hosts.b):
            cluster = clusters[address(head)]
            assert cluster["gcs_address"] == head.gcs_address
            assert "scan" in cluster["sources"], cluster


async def test_connect_external_to_a_remote_dashboard(
        hosts: Hosts, namespace: str, redis_url: str, tmp_path: Path) -> None:
    quiet = {"scan_hosts": [], "scan_ports": "", "discovery_allow": [hosts.lab.subnet], **QUICK}
    async with watching(namespace, redis_url, tmp_path, **quiet) as client:
        assert await clusters_by_address(client) == {}
        for head in (hosts.a, hosts.b):
            resp = await client.post("/api/cluster/connect-external",
                                     json={"cluster_address": head.dashboard_url})
            body = await resp.json()
            assert resp.status == 200 and body["success"], body
        assert_placed(await both_found(client, hosts), hosts)


async def test_a_lab_left_out_of_the_allow_list_is_refused(
        hosts: Hosts, namespace: str, redis_url: str, tmp_path: Path) -> None:
    elsewhere = {**hosts.scan(), "discovery_allow": ["127.0.0.0/8"]}
    async with watching(namespace, redis_url, tmp_path, **elsewhere) as client:
        resp = await client.post("/api/cluster/connect-external",
                                 json={"cluster_address": hosts.b.dashboard_url})
        body = await resp.json()
        assert resp.status == 403 and body["code"] == "address_not_allowed", body
        assert await clusters_by_address(client) == {}  # and the first pass's scan found nothing either


async def test_a_host_cut_off_is_lost_with_the_reason_and_comes_back_when_healed(
        hosts: Hosts, namespace: str, redis_url: str, tmp_path: Path) -> None:
    h2 = hosts.lab.host("h2")
    async with watching(namespace, redis_url, tmp_path, **hosts.scan()) as client:
        await both_found(client, hosts)
        b_id = (await clusters_by_address(client))[address(hosts.b)]["id"]
        ws = await client.ws_connect("/ws?topics=clusters,nodes", heartbeat=None)
        first = await recv(ws, deadline=30)
        assert first["type"] == "snapshot", first
        watch = WsWatch(ws, first)
        try:
            hosts.lab.cut(h2)
            try:
                lost = await watch.until(lambda m: m.get("type") == "cluster-lost" and m.get("id") == b_id,
                                         "cluster B lost", DEADLINE)
                assert lost["cluster"]["state"] == "lost" and lost["cluster"]["error"], lost
                await watch.until(node_event(hosts.b.node_id, "updated", "UNREACHABLE"),
                                  "B's head UNREACHABLE")
                clusters = await clusters_by_address(client)
                assert clusters[address(hosts.b)]["state"] == "lost"
                assert clusters[address(hosts.b)]["error"] == lost["cluster"]["error"]
                assert clusters[address(hosts.a)]["state"] == "alive"
                nodes = await nodes_by_ray_id(client)
                assert nodes[str(hosts.b.node_id)]["state"] == "UNREACHABLE"
                assert {nodes[str(n.node_id)]["state"] for n in (hosts.a, hosts.a_node)} == {"ALIVE"}
            finally:
                hosts.lab.heal(h2)
            back = await watch.until(lambda m: m.get("type") == "cluster-found" and m.get("id") == b_id,
                                     "cluster B back", DEADLINE)
            assert back["cluster"]["state"] == "alive" and not back["cluster"]["error"], back
            await watch.until(node_event(hosts.b.node_id, "updated", "ALIVE"), "B's head ALIVE again")
            nodes = await both_found(client, hosts)  # the same nodes, by the same ids: nothing restarted
            assert_placed(nodes, hosts)
            assert (await clusters_by_address(client))[address(hosts.b)]["id"] == b_id
        finally:
            await watch.close()
