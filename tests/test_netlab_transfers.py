"""Transfers across hosts (issue 15): a Ray cluster on two hosts of a network lab (`tests.support.netlab`),
its head on h1 and a node on h2. CastRay's transfer service runs on h1, beside the head (through a relay
to this machine's Redis); discovery, the registry and the gateway run on this machine. The lab's range is
allowed by ``CASTRAY_DISCOVERY_ALLOW`` and nothing else.

A unicast queued with POST /api/transfers, generated on h1 and sent to h2: the copy on h2 has the
source's digest and size, and the bytes went over the lab's links (h1's sent and h2's received counters).

Why the transfer service runs on a lab host and not on this machine joined to the cluster (as ``castray
transfer --join-ray`` does for clusters on other machines): the lab's hosts share this machine's processes
and files, and a Ray driver attaches to a raylet it finds among the machine's processes, the head's first.
From this machine it would attach to h1's head through its socket file, and then tell the other nodes
to call it back at h1's address, where it does not listen. On h1 that raylet is its own, as on a real host.

Needs root and iproute2 (CI has both). One lab for the module; every wait is for a condition.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from castray import local_ray
from tests.conftest import REDIS_URL
from tests.support import netlab, processes
from tests.support import transfer_env as env
from tests.support.gateway_files import gateway
from tests.support.live_view import live_view
from tests.support.waiting import wait_for

DEADLINE = 120.0  # a busy 2-core machine: we wait for conditions, never assert on time
MiB = 1024 * 1024


@dataclass
class Cluster:
    lab: netlab.Lab
    head: local_ray.RayNode  # on h1
    node: local_ray.RayNode  # on h2
    redis: str  # host:port of this machine's Redis, as the lab's hosts reach it


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with netlab.running(2) as lab:
        head = lab.start_head(lab.host("h1"))
        node = lab.start_worker(lab.host("h2"), head)
        redis = urlsplit(REDIS_URL)
        yield Cluster(lab, head, node, lab.relay(redis.port or 6379, redis.hostname or "127.0.0.1"))


def transfer_service(cluster: Cluster, namespace: str, data_dir: Path) -> subprocess.Popen[bytes]:
    """``castray transfer`` on h1, its Redis through the relay, its log in ``data_dir``."""
    data_dir.mkdir(parents=True)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CASTRAY_") and k != "RAY_ADDRESS"}
    environ.update({"CASTRAY_REDIS_URL": f"redis://{cluster.redis}/0", "CASTRAY_NAMESPACE": namespace,
                    "CASTRAY_DATA_DIR": str(data_dir), "CASTRAY_DISCOVERY_ALLOW": cluster.lab.subnet,
                    "CASTRAY_LOG_LEVEL": "INFO"})
    with open(data_dir / "transfer.log", "wb") as log:
        return cluster.lab.popen(cluster.lab.host("h1"), [sys.executable, "-m", "castray.cli", "transfer"],
                                 env=environ, stdout=log, stderr=subprocess.STDOUT)


async def test_a_unicast_from_one_host_to_another_through_the_gateway(
        cluster: Cluster, namespace: str, redis_url: str, tmp_path: Path) -> None:
    h1, h2 = cluster.lab.host("h1"), cluster.lab.host("h2")
    service = transfer_service(cluster, namespace, tmp_path / "transfer")
    try:
        await unicast(cluster, h1, h2, namespace, redis_url, tmp_path)
    except BaseException:
        print((tmp_path / "transfer" / "transfer.log").read_text(errors="replace")[-5000:])
        raise
    finally:
        processes.stop(service)


async def unicast(cluster: Cluster, h1: netlab.Host, h2: netlab.Host, namespace: str, redis_url: str,
                  tmp_path: Path) -> None:
    async with live_view(namespace, redis_url, [cluster.head.dashboard_url], scan_hosts=[],
                         discovery_allow=[cluster.lab.subnet]), \
            gateway(namespace, tmp_path / "gateway") as client:
        async def placed() -> dict[str, dict[str, Any]] | None:
            nodes = {n["ray_node_id"]: n for n in (await (await client.get("/api/nodes")).json())["nodes"]}
            wanted = [nodes.get(str(n.node_id), {}) for n in (cluster.head, cluster.node)]
            return nodes if all(n.get("state") == "ALIVE" for n in wanted) else None
        nodes = await wait_for(placed, "the lab's nodes ALIVE in the view", deadline=DEADLINE, interval=0.2)
        source, target = nodes[str(cluster.head.node_id)], nodes[str(cluster.node.node_id)]
        assert (source["ip"], target["ip"]) == (h1.ip, h2.ip)

        size = 24 * MiB + 5
        sent0, received0 = cluster.lab.counters(h1)[0], cluster.lab.counters(h2)[1]
        resp = await client.post("/api/transfers", json={
            "source": {"generate": {"size": size}, "node_id": source["id"]}, "mode": "unicast",
            "targets": [target["id"]]})
        assert resp.status == 202, await resp.text()
        tid = (await resp.json())["id"]

        async def ended() -> dict[str, Any] | None:
            body: dict[str, Any] = await (await client.get(f"/api/transfers/{tid}")).json()
            return body if body["state"] in ("completed", "failed", "cancelled") else None
        try:
            done = await wait_for(ended, f"transfer {tid} to end", deadline=DEADLINE, interval=0.2)
        except AssertionError:
            raise AssertionError(await (await client.get(f"/api/transfers/{tid}")).text()) from None
        assert done["state"] == "completed", done
        [dest] = done["destinations"]
        assert dest["node_id"] == target["id"] and dest["state"] == "completed", dest
        assert env.size_of(dest["path"]) == size
        assert env.sha256_file(dest["path"]) == dest["sha256"] == done["sha256"], done
        assert cluster.lab.counters(h1)[0] - sent0 >= size  # it crossed the lab: h1 sent it ...
        assert cluster.lab.counters(h2)[1] - received0 >= size  # ... and h2 received it
