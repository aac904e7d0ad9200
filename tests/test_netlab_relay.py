"""The relay between two clusters on different hosts (issue 15 item 3), in a network lab
(`tests.support.netlab`).

Ray moves data only inside one cluster, so a destination in another cluster than the source's is relayed
through the transfer service's machine (`castray.transfer.job`): the source's cluster writes a verified
relay copy on its node there, then the other cluster sends that copy from its own node there. So the
service's host has a node of each cluster: cluster A has its head on h1 and a node on h2; cluster B has its
head on h1 and a node on h3; the transfer service runs on h1. Discovery, the registry and the gateway run on
this machine and watch both dashboards (`tests.support.netlab_transfers`).

A file on A's node on h2 sent to B's node on h3 with POST /api/transfers: the copy on h3 has the test's own
digest of the file, both legs crossed the lab (h2 sent the file to h1, h3 received it), and no relay copy
is left on h1.

Why both heads on h1: the lab's hosts share this machine's processes and files, and a Ray driver attaches
to a node of its cluster that it finds among the machine's processes, the head first (see
tests/test_netlab_transfers.py). With B's head on another host, B's driver on h1 would attach to that head
through its socket file and move the copy without crossing the lab; a real host sees only its own nodes.

Needs root and iproute2 (CI has both). The lab is torn down however the test ends (`netlab.running`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from castray import local_ray
from tests.support import netlab
from tests.support import netlab_transfers as lab_services
from tests.support.netlab_transfers import MiB, Service


@dataclass
class Clusters:
    lab: netlab.Lab
    a_head: local_ray.RayNode  # cluster A's head, on h1 beside the transfer service
    a_node: local_ray.RayNode  # on h2: the source
    b_head: local_ray.RayNode  # cluster B's head, on h1 beside the transfer service
    b_node: local_ray.RayNode  # on h3: the destination
    redis: str


@pytest.fixture
def clusters() -> Iterator[Clusters]:
    with netlab.running(3) as lab:
        h1 = lab.host("h1")
        a_head, b_head = lab.start_head(h1), lab.start_head(h1)
        a_node, b_node = lab.start_worker(lab.host("h2"), a_head), lab.start_worker(lab.host("h3"), b_head)
        yield Clusters(lab, a_head, a_node, b_head, b_node, lab_services.redis_relay(lab))


@pytest.mark.timeout(600)  # four Ray nodes and the services on a busy 2-core machine: setup alone took 90 s
async def test_a_file_on_one_host_relayed_to_another_cluster_on_another_host_is_verified(
        clusters: Clusters, namespace: str, redis_url: str, tmp_path: Path) -> None:
    lab, h2, h3 = clusters.lab, clusters.lab.host("h2"), clusters.lab.host("h3")
    service = Service(lab, lab.host("h1"), clusters.redis, namespace, tmp_path / "transfer")
    size = 6 * MiB + 1
    sha = lab_services.payload(service, "relayed.bin", size)
    dashboards = [clusters.a_head.dashboard_url, clusters.b_head.dashboard_url]
    async with lab_services.services(service, dashboards, redis_url, tmp_path / "gateway",
                                     CASTRAY_CHUNK_BYTES=str(MiB)) as client:
        rows = await lab_services.alive_in_view(
            client, [clusters.a_head, clusters.a_node, clusters.b_head, clusters.b_node])
        source, target = rows[str(clusters.a_node.node_id)], rows[str(clusters.b_node.node_id)]
        assert source["cluster_id"] != target["cluster_id"], (source, target)
        assert (source["ip"], target["ip"]) == (h2.ip, h3.ip)
        sent0, received0 = lab.counters(h2)[0], lab.counters(h3)[1]
        tid = await lab_services.send(client, {"source": {"node_id": source["id"], "path": "relayed.bin"},
                                               "mode": "unicast", "targets": [target["id"]]})
        done = await lab_services.ended(client, tid, service)

    assert done["state"] == "completed" and done["error"] is None, done
    [dest] = done["destinations"]
    assert dest["node_id"] == target["id"], dest
    lab_services.verified(dest, sha, size)
    assert lab.counters(h2)[0] - sent0 >= size  # A's leg crossed the lab: h2 sent the file to h1 ...
    assert lab.counters(h3)[1] - received0 >= size  # ... and B's leg: h3 received it
    relays = service.data_dir / "relay"
    assert not relays.exists() or not any(relays.iterdir()), list(relays.iterdir())  # relay copy removed
