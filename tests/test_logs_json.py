"""A real transfer service process with JSON logs (``CASTRAY_LOG_JSON``), against a real Ray head: its
stderr is JSON lines, each naming the service and the instance its heartbeat names, and the lines about a
transfer carry that transfer's id (its cluster's and its destination node's where there is one), never
another transfer's. Then discovery, as a process, says which cluster a line is about, and the node registry
which cluster and node the event it refused was about."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from castray import local_ray
from castray.shared.heartbeat import read_replicas
from castray.shared.log import IDS
from castray.shared.names import Names
from tests.support import transfer_env as env
from tests.support.feed import DiscoveryFeed, make_cluster, make_node
from tests.support.json_logs import Line, about, parse
from tests.support.processes import stop
from tests.support.waiting import wait_for


def _spawn(module: str, tmp_path: Path, namespace: str, redis_url: str, **extra: str
           ) -> subprocess.Popen[bytes]:
    environ = {**os.environ, "CASTRAY_NAMESPACE": namespace, "CASTRAY_REDIS_URL": redis_url,
               "CASTRAY_LOG_JSON": "true", "CASTRAY_LOG_LEVEL": "INFO", "CASTRAY_SERVICE_BEAT_S": "0.5",
               **extra}
    err = open(tmp_path / f"{module}.stderr", "wb")  # noqa: SIM115 - kept open by the child
    return subprocess.Popen([sys.executable, "-c", f"from castray.{module}.main import main; main()"],
                            env=environ, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)


def _stderr(tmp_path: Path, module: str) -> list[Line]:
    lines, other = parse((tmp_path / f"{module}.stderr").read_text())
    assert other == [], f"{module} wrote lines that are not JSON: {other[:5]}"
    return lines


async def _instance(redis: aioredis.Redis, names: Names, service: str) -> str:
    async def beating() -> str | None:
        replicas = await read_replicas(redis, names, stale_beats=3, forget_after=3600)
        return next((r.instance for r in replicas if r.service == service), None)

    instance: str = await wait_for(beating, f"{service}'s heartbeat", deadline=60)
    return instance


@pytest.fixture
def transfer_service(tmp_path: Path, namespace: str, redis_url: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = _spawn("transfer", tmp_path, namespace, redis_url, CASTRAY_DATA_DIR=str(tmp_path / "data"),
                  CASTRAY_INBOX_DIR=str(tmp_path / "inbox"))
    yield proc
    stop(proc, timeout=30)


async def test_a_transfer_service_logs_json_lines_naming_its_instance_and_each_transfer(
    ray_head: local_ray.RayNode, transfer_service: subprocess.Popen[bytes], redis_client: aioredis.Redis,
    names: Names, tmp_path: Path,
) -> None:
    view = await env.register_view(redis_client, names, ray_head)
    head = view[str(ray_head.node_id)]
    instance = await _instance(redis_client, names, "transfer")
    source = {"generate": {"size": "1MiB"}}
    done = await env.queue(redis_client, names, source=source, targets=[head.id], file_name="logged.bin",
                           mode="unicast")
    done = await env.wait_record(redis_client, names, done.id, env.done, timeout=120)
    assert done.state == "completed", done.model_dump()
    again = await env.queue(redis_client, names, source=source, targets=[head.id], file_name="logged.bin",
                            mode="unicast")  # the same name, no overwrite: that destination fails
    again = await env.wait_record(redis_client, names, again.id, env.done, timeout=120)
    assert again.state == "failed", again.model_dump()
    stop(transfer_service, timeout=30)

    lines = _stderr(tmp_path, "transfer")
    assert lines, "the transfer service logged nothing"
    service = about(lines, service="transfer")
    assert service and all(line["instance"] == instance for line in service)
    driver = about(lines, service="transfer-driver")  # its driver logs as it does, naming its replica
    assert all(line["instance"] == instance for line in driver)
    for rec in (done, again):  # and each plan's thread (no context inherited) names its transfer
        assert about(driver, transfer_id=rec.id, message=f"transfer {rec.id}: plan of 1 destination(s) taken")
    assert {line["service"] for line in lines} <= {"transfer", "transfer-driver"}
    for rec, state in ((done, "completed"), (again, "failed")):
        mine = about(lines, transfer_id=rec.id)
        assert mine, f"no line names transfer {rec.id}"
        outcome = f"transfer {rec.id} {state}" + (f": {rec.error}" if rec.error else "")
        (settled,) = about(mine, message=outcome)
        assert settled["cluster_id"] == head.cluster_id
        assert settled["service"] == "transfer" and settled["instance"] == instance
        assert "node_id" not in settled
    (verified,) = [line for line in about(lines, transfer_id=done.id) if "verified" in str(line["message"])]
    assert verified["node_id"] == head.id and verified["level"] == "INFO"
    (refused,) = [line for line in about(lines, transfer_id=again.id, level="WARNING")
                  if str(line["message"]).startswith(f"transfer {again.id}: {head.id} failed")]
    assert refused["node_id"] == head.id and refused["cluster_id"] == head.cluster_id
    for line in lines:  # a line that says which transfer it is about carries that id, never another
        said = re.match(r"transfer ([0-9a-f]{32})\b", str(line["message"]))
        if said:
            assert line["transfer_id"] == said.group(1), line
    started = [line for line in service if "serving" in str(line["message"])]
    assert started and all("transfer_id" not in line for line in started)  # no id where there is none


async def test_discovery_logs_the_cluster_a_line_is_about(
    ray_head: local_ray.RayNode, redis_client: aioredis.Redis, names: Names, namespace: str, redis_url: str,
    tmp_path: Path,
) -> None:
    proc = _spawn("discovery", tmp_path, namespace, redis_url,
                  CASTRAY_SCAN_PORTS=str(ray_head.dashboard_port), CASTRAY_SCAN_INTERVAL="0.5",
                  CASTRAY_RAY_TEMP_DIRS="")
    try:
        instance = await _instance(redis_client, names, "discovery")

        async def found() -> bool:
            text = await asyncio.to_thread((tmp_path / "discovery.stderr").read_text)
            return " found at " in text

        await wait_for(found, "discovery to find the cluster", deadline=60)
    finally:
        stop(proc)
    lines = _stderr(tmp_path, "discovery")
    assert all(line["service"] == "discovery" and line["instance"] == instance for line in lines)
    found_lines = [line for line in lines if " found at " in str(line["message"])]
    assert found_lines
    for line in found_lines:  # "cluster <id> found at <dashboard> by <sources>", with that id in its fields
        assert str(line["message"]).startswith(f"cluster {line['cluster_id']} found at ")
        assert "transfer_id" not in line
    leading = [line for line in lines if "leading as" in str(line["message"])]
    assert leading and all("cluster_id" not in line for line in leading)


async def test_the_node_registry_names_the_cluster_and_node_of_an_event_it_refused(
    redis_client: aioredis.Redis, names: Names, namespace: str, redis_url: str, tmp_path: Path,
) -> None:
    feed = DiscoveryFeed(redis_client, names)
    feed.clusters["c1"] = make_cluster(1)
    await feed.reset()  # discovery's state, before the registry starts
    proc = _spawn("node_registry", tmp_path, namespace, redis_url, CASTRAY_CHECK_INTERVAL="60")
    try:
        instance = await _instance(redis_client, names, "node-registry")

        async def listening() -> bool:  # subscribed, and its first resync has made the view
            [(_, subscribers)] = await redis_client.pubsub_numsub(names.discovery_events)
            return subscribers >= 1 and bool(await redis_client.hexists(names.view_meta, "epoch"))

        await wait_for(listening, "the registry to subscribe and make the view", deadline=60)
        await feed.node_upsert(make_node("c1", 1), publish=False)  # lost on the way
        gap = await feed.node_upsert(make_node("c1", 2))  # one seq skipped: refused, and a resync
        said = f"resync (gap at {gap.source} seq {gap.seq}): rebuilt"

        async def resynced() -> bool:
            return said in await asyncio.to_thread((tmp_path / "node_registry.stderr").read_text)

        await wait_for(resynced, "the registry to resync after the gap", deadline=60)
    finally:
        stop(proc)
    lines = _stderr(tmp_path, "node_registry")
    assert all(line["service"] == "node-registry" and line["instance"] == instance for line in lines)
    (refused,) = [line for line in lines if str(line["message"]).startswith(said)]
    assert (refused["cluster_id"], refused["node_id"]) == ("c1", "c1-n0002")
    assert "transfer_id" not in refused
    first = [line for line in lines if str(line["message"]).startswith("resync (subscribed)")]
    assert first and all(not set(IDS) & line.keys() for line in first)  # about the whole view: no ids
