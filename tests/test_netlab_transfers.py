"""Transfers across hosts (issue 15 item 3): a Ray cluster on three hosts of a network lab
(`tests.support.netlab`), its head on h1 and a node on each of h2 and h3. CastRay's transfer service runs
on h1, beside the head (through a relay to this machine's Redis); discovery, the registry and the gateway
run on this machine (`tests.support.netlab_transfers`). The lab's range is allowed by
``CASTRAY_DISCOVERY_ALLOW`` and nothing else.

Each transfer is queued with POST /api/transfers and runs through the real services; every copy is checked
against the source's digest (the service's, and the test's own for a file it wrote), and the bytes went
over the lab's links (each destination host's received counter grew by at least the file's size):
- a unicast, generated on h1 and sent to h2;
- a multicast of a file on h1 to h2 and h3;
- a broadcast of a file on h1 to every node of the cluster (h1, h2, h3).
A link cut mid-transfer: tests/test_netlab_transfer_cut.py; the relay between clusters on two hosts:
tests/test_netlab_relay.py.

Why the transfer service runs on a lab host and not on this machine joined to the cluster (as ``castray
transfer --join-ray`` does for clusters on other machines): the lab's hosts share this machine's processes
and files, and a Ray driver attaches to a raylet it finds among the machine's processes, the head's first.
From this machine it would attach to h1's head through its socket file, and then tell the other nodes
to call it back at h1's address, where it does not listen. On h1 that raylet is its own, as on a real host.

Needs root and iproute2 (CI has both). One lab for the module, torn down however it ends; every wait is
for a condition.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from castray import local_ray
from tests.support import netlab
from tests.support import netlab_transfers as lab_services
from tests.support.netlab_transfers import MiB, Service


@dataclass
class Cluster:
    lab: netlab.Lab
    head: local_ray.RayNode  # on h1
    nodes: dict[str, local_ray.RayNode]  # on h2 and h3
    redis: str  # host:port of this machine's Redis, as the lab's hosts reach it

    def on(self, host: str) -> local_ray.RayNode:
        return self.head if host == "h1" else self.nodes[host]


@dataclass
class Stack:
    client: TestClient[Any, Any]
    service: Service
    rows: dict[str, dict[str, Any]]  # the view's rows of the cluster's nodes, by Ray node id

    def view_id(self, cluster: Cluster, host: str) -> str:
        return str(self.rows[str(cluster.on(host).node_id)]["id"])


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with netlab.running(3) as lab:
        head = lab.start_head(lab.host("h1"))
        nodes = {h: lab.start_worker(lab.host(h), head) for h in ("h2", "h3")}
        yield Cluster(lab, head, nodes, lab_services.redis_relay(lab))


@pytest.fixture
async def stack(cluster: Cluster, namespace: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """The services, with the cluster's nodes ALIVE in their view; chunks of 1 MiB, so that the small
    files of these tests still go in several chunks."""
    service = Service(cluster.lab, cluster.lab.host("h1"), cluster.redis, namespace, tmp_path / "transfer")
    async with lab_services.services(service, [cluster.head.dashboard_url], redis_url, tmp_path / "gateway",
                                     CASTRAY_CHUNK_BYTES=str(MiB)) as client:
        rows = await lab_services.alive_in_view(client, [cluster.head, *cluster.nodes.values()])
        yield Stack(client, service, rows)


def received(cluster: Cluster) -> dict[str, int]:
    """Bytes each host has received so far."""
    return {h.name: cluster.lab.counters(h)[1] for h in cluster.lab.hosts}


async def test_a_unicast_from_one_host_to_another_through_the_gateway(cluster: Cluster, stack: Stack) -> None:
    h1, h2 = cluster.lab.host("h1"), cluster.lab.host("h2")
    source, target = stack.rows[str(cluster.head.node_id)], stack.rows[str(cluster.nodes["h2"].node_id)]
    assert (source["ip"], target["ip"]) == (h1.ip, h2.ip)

    size = 24 * MiB + 5
    sent0, received0 = cluster.lab.counters(h1)[0], cluster.lab.counters(h2)[1]
    tid = await lab_services.send(stack.client, {
        "source": {"generate": {"size": size}, "node_id": source["id"]}, "mode": "unicast",
        "targets": [target["id"]]})
    done = await lab_services.ended(stack.client, tid, stack.service)
    assert done["state"] == "completed", done
    [dest] = done["destinations"]
    assert dest["node_id"] == target["id"], dest
    lab_services.verified(dest, done["sha256"], size)
    assert cluster.lab.counters(h1)[0] - sent0 >= size  # it crossed the lab: h1 sent it ...
    assert cluster.lab.counters(h2)[1] - received0 >= size  # ... and h2 received it


async def test_a_multicast_from_one_host_to_two_others_is_verified_on_each(
        cluster: Cluster, stack: Stack) -> None:
    size = 6 * MiB + 3
    sha = lab_services.payload(stack.service, "multicast.bin", size)
    targets = [stack.view_id(cluster, h) for h in ("h2", "h3")]
    before = received(cluster)
    tid = await lab_services.send(stack.client, {
        "source": {"node_id": stack.view_id(cluster, "h1"), "path": "multicast.bin"}, "mode": "multicast",
        "targets": targets})
    done = await lab_services.ended(stack.client, tid, stack.service)
    assert done["state"] == "completed" and done["error"] is None, done
    assert sorted(d["node_id"] for d in done["destinations"]) == sorted(targets)
    for dest in done["destinations"]:
        lab_services.verified(dest, sha, size)
    after = received(cluster)
    assert all(after[h] - before[h] >= size for h in ("h2", "h3")), (before, after)  # both over the lab


async def test_a_broadcast_reaches_every_node_of_the_cluster_verified(cluster: Cluster, stack: Stack) -> None:
    size = 5 * MiB + 11
    sha = lab_services.payload(stack.service, "broadcast.bin", size)
    before = received(cluster)
    tid = await lab_services.send(stack.client, {
        "source": {"node_id": stack.view_id(cluster, "h1"), "path": "broadcast.bin"}, "mode": "broadcast"})
    done = await lab_services.ended(stack.client, tid, stack.service)
    assert done["state"] == "completed" and done["error"] is None, done
    every = sorted(stack.view_id(cluster, h) for h in ("h1", "h2", "h3"))
    assert sorted(d["node_id"] for d in done["destinations"]) == every
    for dest in done["destinations"]:
        lab_services.verified(dest, sha, size)
    after = received(cluster)
    assert all(after[h] - before[h] >= size for h in ("h2", "h3")), (before, after)
