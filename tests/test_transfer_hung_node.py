"""A destination that hangs without dying (its agent's worker stopped with SIGSTOP: its raylet still
answers Ray's health checks, so Ray never declares it dead). The driver waits for the oldest chunk's
writes only up to the plan's chunk deadline (`castray.transfer.pacing`): the hung destination fails with
"node did not answer in time", and the others, in a chain where it sat in the middle, complete verified.
Two hung at once: their copies' aborts, which they never answer, are waited for together (the driver's
log line of the settled aborts names both), not one after the other while the healthy copy waits, and
their temporary files are still removed before the transfer ends.
Outcomes only: the test's waits are generous deadlines, never asserted times."""

from __future__ import annotations

import asyncio
import signal
from functools import partial
from pathlib import Path

import psutil
import pytest
import redis.asyncio as aioredis

from castray import local_ray
from castray.shared.names import Names
from castray.transfer.pacing import NOT_ANSWERED
from tests.support import transfer_env as env
from tests.support.agents import agent_processes
from tests.support.json_logs import parse
from tests.support.ray_nodes import start_worker
from tests.support.waiting import wait_for

MiB = 1024 * 1024


async def test_a_hung_destination_fails_in_time_and_the_chain_around_it_completes(
    ray_head: local_ray.RayNode, ray_workers: list[local_ray.RayNode], redis_client: aioredis.Redis,
    names: Names, namespace: str, tmp_path: Path,
) -> None:
    for _ in range(2):
        ray_workers.append(await asyncio.to_thread(start_worker, ray_head))
    view = await env.register_view(redis_client, names, ray_head)
    head, hung, last = view[str(ray_head.node_id)], *(view[str(n.node_id)] for n in ray_workers)
    upload_id, want = await env.random_upload(redis_client, names, tmp_path / "data/uploads/payload.bin",
                                              48 * MiB)
    stopped: list[psutil.Process] = []
    async with env.running_worker(namespace, tmp_path, redis_client, rate_limit=4 * MiB, chunk_bytes=MiB,
                                  chunk_timeout=8.0):
        rec = await env.queue(redis_client, names, source={"upload_id": upload_id},
                              targets=[head.id, hung.id, last.id], file_name="h.bin")
        await env.wait_record(redis_client, names, rec.id,
                              lambda r: all(d.bytes_done >= 4 * MiB for d in r.destinations), timeout=120)
        stopped = await wait_for(lambda: agent_processes(ray_workers[0]), "the hung node's agent")
        try:
            for proc in stopped:
                proc.send_signal(signal.SIGSTOP)
            final = await env.wait_record(redis_client, names, rec.id, env.done, timeout=240)
            left = env.temp_files(tmp_path / "inbox")
        finally:
            for proc in stopped:
                proc.send_signal(signal.SIGCONT)

    by_node = {d.node_id: d for d in final.destinations}
    assert by_node[hung.id].state == "failed", final.model_dump()
    assert NOT_ANSWERED in str(by_node[hung.id].error), final.model_dump()
    for node in (head, last):
        assert by_node[node.id].state == "completed" and by_node[node.id].sha256 == want, final.model_dump()
        assert env.sha256_file(tmp_path / "inbox" / node.id / "h.bin") == want
    assert final.state == "completed" and hung.id in str(final.error)
    assert not env.exists(tmp_path / "inbox" / hung.id / "h.bin")
    assert left == []  # the hung node's temp file removed from the same host


async def test_two_hung_destinations_are_aborted_together_and_the_healthy_one_completes(
    ray_head: local_ray.RayNode, ray_workers: list[local_ray.RayNode], redis_client: aioredis.Redis,
    names: Names, namespace: str, tmp_path: Path, capfd: pytest.CaptureFixture[str],
) -> None:
    for _ in range(2):
        ray_workers.append(await asyncio.to_thread(start_worker, ray_head))
    view = await env.register_view(redis_client, names, ray_head)
    head, hung = view[str(ray_head.node_id)], [view[str(n.node_id)] for n in ray_workers]
    upload_id, want = await env.random_upload(redis_client, names, tmp_path / "data/uploads/payload.bin",
                                              48 * MiB)
    stopped: list[psutil.Process] = []
    # The star: both hung copies miss the same chunk's deadline. The driver logs JSON lines on stderr.
    async with env.running_worker(namespace, tmp_path, redis_client, rate_limit=4 * MiB, chunk_bytes=MiB,
                                  chunk_timeout=8.0, broadcast_chain=False, log_json=True):
        rec = await env.queue(redis_client, names, source={"upload_id": upload_id},
                              targets=[head.id, *(n.id for n in hung)], file_name="h2.bin")
        await env.wait_record(redis_client, names, rec.id,
                              lambda r: all(d.bytes_done >= 4 * MiB for d in r.destinations), timeout=120)
        for worker in ray_workers:
            stopped += await wait_for(partial(agent_processes, worker), "a hung node's agent")
        try:
            for proc in stopped:
                proc.send_signal(signal.SIGSTOP)
            final = await env.wait_record(redis_client, names, rec.id, env.done, timeout=240)
            left = env.temp_files(tmp_path / "inbox")
        finally:
            for proc in stopped:
                proc.send_signal(signal.SIGCONT)

    by_node = {d.node_id: d for d in final.destinations}
    for node in hung:
        assert by_node[node.id].state == "failed", final.model_dump()
        assert NOT_ANSWERED in str(by_node[node.id].error), final.model_dump()
        assert not env.exists(tmp_path / "inbox" / node.id / "h2.bin")
    assert by_node[head.id].state == "completed" and by_node[head.id].sha256 == want, final.model_dump()
    assert env.sha256_file(tmp_path / "inbox" / head.id / "h2.bin") == want
    assert final.state == "completed"
    assert left == []  # both hung copies' temp files removed from the same host before the end
    lines, _ = parse(capfd.readouterr().err)
    settled = [line for line in lines if line.get("service") == "transfer-driver" and "unanswered" in line]
    # One wait for both unanswered aborts: a driver waiting for each in turn has no such line.
    assert [sorted(line["unanswered"]) for line in settled] == [sorted(n.id for n in hung)], settled
