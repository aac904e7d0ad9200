"""Service heartbeats against real processes: ``GET /api/services`` and ``castray health --service``.

A real ``castray transfer`` whose event loop is stuck (SIGSTOP) is shown stale and fails its health
check, and is fresh again once it runs (SIGCONT); a fresh ``castray up`` lists each service once, each
healthy by ``castray health --service``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from tests.support.processes import stop
from tests.support.up import DEADLINE, Up, get_json
from tests.support.waiting import wait_for, wait_for_blocking

pytest_plugins = ("tests.support.gateway_fixtures", "tests.support.up")

BEAT_S = 0.3  # the transfer worker's heartbeat interval here: stale after 3 of them (the default)


def _env(namespace: str, redis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASTRAY_") and k != "RAY_ADDRESS"}
    env.update({"CASTRAY_NAMESPACE": namespace, "CASTRAY_REDIS_URL": redis_url,
                "CASTRAY_DATA_DIR": str(tmp_path / "data"), **extra})
    return env


def _health(env: dict[str, str], service: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "castray.cli", "health", "--service", service], env=env,
                          capture_output=True, text=True, timeout=60)


async def health(env: dict[str, str], service: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(_health, env, service)


def _start_transfer(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "castray.cli", "transfer"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _replicas_of(body: dict[str, Any], service: str, pid: int | None = None) -> list[dict[str, Any]]:
    return [r for r in body["services"] if r["service"] == service and (pid is None or r["pid"] == pid)]


async def test_a_stuck_transfer_worker_is_stale_in_api_services_and_fails_its_health(
        make_gateway: Any, namespace: str, redis_url: str, tmp_path: Path) -> None:
    client: TestClient = await make_gateway()
    env = _env(namespace, redis_url, tmp_path, CASTRAY_SERVICE_BEAT_S=str(BEAT_S))
    log_path = tmp_path / "transfer.log"
    worker = await asyncio.to_thread(_start_transfer, env, log_path)
    try:
        async def entry(stale: bool) -> dict[str, Any] | None:
            resp = await client.get("/api/services")
            assert resp.status == 200
            mine = _replicas_of(await resp.json(), "transfer", worker.pid)
            return mine[0] if len(mine) == 1 and mine[0]["stale"] is stale else None

        fresh = await wait_for(lambda: entry(False), "the transfer worker's fresh heartbeat",
                               deadline=DEADLINE)
        assert fresh["interval"] == BEAT_S and fresh["holds"]["transfers_running"] == 0
        assert fresh["instance"].startswith("transfer@") and fresh["started"] <= fresh["beat"]
        healthy = await health(env, "transfer")
        assert healthy.returncode == 0, healthy.stderr

        os.kill(worker.pid, signal.SIGSTOP)
        stale = await wait_for(lambda: entry(True), "the stopped worker to be shown stale", deadline=DEADLINE)
        assert stale["age"] > 3 * BEAT_S  # stale means: more than 3 of its intervals without a beat
        sick = await health(env, "transfer")
        assert sick.returncode == 1
        assert "unhealthy" in sick.stderr and stale["instance"] in sick.stderr, sick.stderr

        os.kill(worker.pid, signal.SIGCONT)
        await wait_for(lambda: entry(False), "the resumed worker to beat again", deadline=DEADLINE)
        assert (await health(env, "transfer")).returncode == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGCONT)
        await asyncio.to_thread(stop, worker)

    async def removed() -> bool:
        body = await (await client.get("/api/services")).json()
        return not _replicas_of(body, "transfer", worker.pid)

    await wait_for(removed, "the stopped worker's entry to be removed (a clean stop is no stale replica)")
    missing = await health(env, "transfer")
    assert missing.returncode == 1 and "no heartbeat" in missing.stderr, missing.stderr


def test_a_fresh_stack_lists_each_service_once_and_each_is_healthy(
        start_up: Any, isolated_env: dict[str, str]) -> None:
    up: Up = start_up(isolated_env, "--no-ray")
    kinds = ["discovery", "gateway", "node-registry", "transfer"]

    def all_listed() -> dict[str, Any] | None:
        body: dict[str, Any] = get_json(f"{up.base}/api/services")
        listed = sorted({r["service"] for r in body["services"] if not r["stale"]})
        leading = any(r["holds"]["leading"] for r in _replicas_of(body, "discovery"))
        return body if listed == kinds and leading else None

    body = wait_for_blocking(all_listed, "every service's heartbeat in /api/services", deadline=DEADLINE)
    assert sorted(r["service"] for r in body["services"]) == kinds, body  # each once
    assert body["count"] == 4 and body["stale"] == 0
    holds = {r["service"]: r["holds"] for r in body["services"]}
    assert holds["transfer"]["transfers_running"] == 0
    assert isinstance(holds["gateway"]["ws_clients"], int)
    assert isinstance(holds["node-registry"]["events_applied"], int)
    assert body["transfer_queue"] == {"length": 0, "pending": 0}
    assert {r["pid"] for r in body["services"]} <= {p.pid for p in up.tree()}
    assert get_json(f"{up.base}/api/ready") == {"ready": True, "redis": True, "events_subscribed": True,
                                                "error": None}
    for service in ("discovery", "registry", "transfer", "gateway"):
        checked = _health(isolated_env, service)
        assert checked.returncode == 0, (service, checked.stderr)
