"""`docker compose up`, for real: the repository's docker-compose.yml, unchanged but for the base image
names (local stand-ins: no image registry answers here), built and run on a real Docker engine, and used
only through the gateway's published port, as a user would.

The tests run in file order on one stack: the first transfer is sent the moment the nodes show ALIVE,
then the seed's walkthrough, verified copies, a scale to three transfer replicas with one killed, a Redis
restart, and `down -v`. The stack is taken down with its volumes whatever happens.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.compose import Stack, docker_engine, standin_images

pytestmark = pytest.mark.timeout(1800)

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with docker_engine():
        s = Stack(standin_images())
        try:
            s.compose("build", timeout=1200)
            s.compose("up", "-d", timeout=600)
            yield s
        finally:
            s.down()


def _head(stack: Stack) -> dict[str, Any]:
    return next(n for n in stack.alive_nodes() if n["is_head"])


def _verified_in_containers(stack: Stack, record: dict[str, Any]) -> None:
    """Every destination completed, and its file, read inside the container that is that node, has the
    source's sha256."""
    assert record["state"] == "completed", record
    nodes = {n["id"]: n for n in stack.get("/api/nodes")["nodes"]}
    for dest in record["destinations"]:
        assert dest["state"] == "completed" and dest["sha256"] == record["sha256"], dest
        container = stack.container_of_ip(nodes[dest["node_id"]]["ip"])
        assert stack.sha256_in(container, dest["path"]) == record["sha256"], (dest, container)


def test_a_broadcast_sent_the_moment_the_nodes_show_alive_completes(stack: Stack) -> None:
    # Right after `up`: the head and the transfer replica's own raylet, as soon as the view lists them.
    stack.wait_for("the head and the transfer node ALIVE", lambda: len(stack.alive_nodes()) >= 2,
                   interval=0.1)
    transfer_id = stack.transfer({"source": {"generate": {"size": "64MiB", "content": "random"}},
                                  "mode": "broadcast", "targets": []})
    record = stack.finished(transfer_id)
    assert record["bytes_total"] == 64 * MiB
    assert len(record["destinations"]) == 2
    _verified_in_containers(stack, record)


def test_every_service_becomes_healthy_and_the_installed_package_is_not_shadowed(stack: Stack) -> None:
    health = stack.wait_healthy()
    services = {stack.inspect(cid)["Config"]["Labels"]["com.docker.compose.service"]
                for cid in stack.containers()}
    assert services == {"redis", "ray-head", "discovery", "node-registry", "transfer", "gateway"}, health
    (transfer,) = stack.containers("transfer")
    # Run from the image's working directory, as the service runs its drivers: plain `-m` too.
    assert stack.exec(transfer, "pwd").strip() == "/home/castray"
    assert stack.exec(transfer, "python", "-m", "castray.transfer.driver", "--help").count("--address")
    assert stack.exec(transfer, "id", "-un").strip() == "castray"  # not root
    (gateway,) = stack.containers("gateway")
    missing = stack.exec(gateway, "python", "-c", "import importlib.util as u; print(u.find_spec('ray'))")
    assert missing.strip() == "None"  # the gateway image carries no Ray


def test_api_services_lists_each_service_once_from_its_own_container(stack: Stack) -> None:
    # Every container is healthy: each healthcheck (castray health --service) found its own fresh heartbeat.
    body = stack.get("/api/services")
    assert sorted(r["service"] for r in body["services"]) == ["discovery", "gateway", "node-registry",
                                                              "transfer"], body
    hostname = ["python", "-c", "import socket; print(socket.gethostname())"]
    for replica in body["services"]:
        (container,) = stack.containers(replica["service"])
        assert replica["host"] == stack.exec(container, *hostname).strip(), replica
    leading = {r["service"]: r["holds"].get("leading") for r in body["services"]}
    assert leading["discovery"] is True
    assert body["transfer_queue"]["pending"] == 0


def test_the_seed_walkthrough_through_the_published_port(stack: Stack) -> None:
    found = stack.request("POST", "/api/cluster/discover-external")
    assert found["success"] is True
    assert [c["dashboard_url"] for c in found["discovered_clusters"]] == ["http://ray-head:8265"]
    info = stack.get("/api/cluster/external-info")
    assert info["is_connected"] is True and info["connected_cluster"] == "ray-head:8265"
    assert len(info["external_nodes"]) == 2
    external = stack.get("/api/nodes/external")
    assert external["success"] is True and external["count"] == 2
    status_body = stack.get("/api/status")
    assert status_body["total_nodes"] == 2 and status_body["active_nodes"] == 2

    stack.request("DELETE", "/api/cluster/disconnect-external")
    stack.wait_for("disconnected", lambda: stack.get("/api/cluster/external-info")["is_connected"] is False)
    reply = stack.request("POST", "/api/cluster/connect-external", {"cluster_address": "ray-head:8265"})
    assert reply["success"] is True, reply
    stack.wait_for("connected again", lambda: len(stack.get("/api/nodes/external")["external_nodes"]) == 2)
    page = stack.get("/ui")
    assert "<html" in page.lower()


def test_a_multicast_of_64_mib_is_verified_in_every_container(stack: Stack) -> None:
    stack.wait_for("both nodes ALIVE", lambda: len(stack.alive_nodes()) == 2)
    targets = [n["id"] for n in stack.alive_nodes()]
    transfer_id = stack.transfer({"source": {"generate": {"size": "64MiB", "content": "random"}},
                                  "mode": "multicast", "targets": targets})
    record = stack.finished(transfer_id)
    assert sorted(d["node_id"] for d in record["destinations"]) == sorted(targets)
    _verified_in_containers(stack, record)


def test_three_transfer_replicas_share_the_work_and_finish_a_killed_ones_transfer(stack: Stack) -> None:
    stack.compose("up", "-d", "--no-recreate", "--scale", "transfer=3", timeout=600)
    stack.wait_for("three transfer nodes and the head ALIVE", lambda: len(stack.alive_nodes()) == 4,
                   timeout=300)
    head = _head(stack)["id"]

    # The work is shared: a burst of transfers lands on more than one replica.
    burst = [stack.transfer({"source": {"generate": {"size": "8MiB", "content": "random"}},
                             "mode": "unicast", "targets": [head]}) for _ in range(9)]
    workers = {stack.finished(t)["worker"].split(":")[0] for t in burst}
    assert len(workers) >= 2, workers

    # A replica killed mid-transfer: another one takes the request over and completes it.
    transfer_id = stack.transfer({"source": {"generate": {"size": "1GiB", "content": "random"}},
                                  "mode": "unicast", "targets": [head]})

    def running() -> dict[str, Any] | None:
        record = dict(stack.get(f"/api/transfers/{transfer_id}"))
        progress = sum(d["bytes_done"] for d in record["destinations"])
        return record if record["state"] == "running" and record["worker"] and progress > 0 else None

    ips = {cid: stack.ip_of(cid) for cid in stack.containers("transfer")}  # before: kill at once, below
    record = stack.wait_for("the big transfer under way", running, interval=0.1)
    assert record["state"] != "completed"
    worker_host = record["worker"].split("@", 1)[1].split(":")[0]  # transfer@<container hostname>:...
    victim = next(c for c in stack.containers("transfer") if c.startswith(worker_host))
    stack.kill(victim)  # SIGKILL: no chance to clean up
    victim_ip = ips[victim]

    final = stack.finished(transfer_id, timeout=600)
    assert final["worker"].split("@", 1)[1].split(":")[0] != worker_host, final
    _verified_in_containers(stack, final)
    # The killed replica's node leaves: DEAD with Ray's reason, no longer counted (the head and two replicas).
    def dead_with_reason() -> list[dict[str, Any]]:
        nodes = stack.get("/api/nodes")["nodes"]
        return [n for n in nodes if n["ip"] == victim_ip and n["state"] == "DEAD" and n["state_message"]]

    stack.wait_for("the killed replica's node DEAD", dead_with_reason, timeout=180)
    counts = stack.get("/api/status")
    assert (counts["total_nodes"], counts["active_nodes"]) == (3, 3), counts
    assert victim_ip not in {n["ip"] for n in stack.alive_nodes()}
    # Gone for good: compose would start a stopped replica again when the service is scaled.
    stack.remove(victim)


def test_a_replica_stopped_by_scaling_down_leaves_the_view_with_sigterm_as_the_reason(stack: Stack) -> None:
    before = stack.containers("transfer")
    ips = {cid: stack.ip_of(cid) for cid in before}
    stack.compose("up", "-d", "--no-recreate", "--scale", "transfer=1", timeout=300)
    (kept,) = stack.containers("transfer")
    stopped_ips = {ip for cid, ip in ips.items() if cid != kept}
    assert stopped_ips

    def dead_by_sigterm() -> bool:
        nodes = stack.get("/api/nodes")["nodes"]
        return all(
            not any(n["ip"] == ip and n["state"] == "ALIVE" for n in nodes)
            and any(n["ip"] == ip and n["state"] == "DEAD" and "SIGTERM" in (n["state_message"] or "")
                    for n in nodes)
            for ip in stopped_ips)

    stack.wait_for("the stopped replica's node DEAD by SIGTERM", dead_by_sigterm, timeout=120)
    stack.wait_for("the head and the kept replica ALIVE", lambda: len(stack.alive_nodes()) == 2)


def test_redis_restarted_keeps_the_state(stack: Stack) -> None:
    transfer_id = stack.transfer({"source": {"generate": {"size": "4MiB", "content": "random"}},
                                  "mode": "unicast", "targets": [_head(stack)["id"]]})
    stack.finished(transfer_id)
    before = stack.get(f"/api/transfers/{transfer_id}")
    clusters_before = [c["id"] for c in stack.get("/api/cluster/external-info")["connected_clusters"]]
    stack.compose("restart", "redis", timeout=120)
    after = stack.wait_for("the gateway answering again",
                           lambda: stack.get(f"/api/transfers/{transfer_id}"), timeout=120)
    assert after == before
    stack.wait_for("the clusters kept", lambda: [c["id"] for c in stack.get(
        "/api/cluster/external-info")["connected_clusters"]] == clusters_before, timeout=120)
    # And it still works: a transfer after the restart completes.
    record = stack.finished(stack.transfer({"source": {"generate": {"size": "4MiB", "content": "random"}},
                                            "mode": "unicast", "targets": [_head(stack)["id"]]}))
    _verified_in_containers(stack, record)


def test_down_with_volumes_leaves_nothing_behind(stack: Stack) -> None:
    assert any(stack.leftovers().values())
    started = time.monotonic()
    stack.compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout=300)
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}, time.monotonic() - started
