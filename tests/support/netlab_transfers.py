"""CastRay's services around Ray clusters of a network lab (`tests.support.netlab`), for the transfer tests
across hosts (tests/test_netlab_transfer*.py).

The transfer service runs on a lab host (``castray transfer``, its Redis through the lab's relay to this
machine's), beside a node of every cluster it drives; discovery, the registry and the gateway run in this
process, on this machine. Why on a lab host: tests/test_netlab_transfers.py's docstring.

Sources are node files the test writes under the service's files root with a digest it knows, so every
copy is checked against the test's own sha256, not only against what the service reported.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp.test_utils import TestClient

from castray import local_ray
from castray.transfer.sink import TEMP_PREFIX, TEMP_SUFFIX
from tests.conftest import REDIS_URL
from tests.support import netlab, processes
from tests.support.gateway_files import gateway
from tests.support.live_view import live_view
from tests.support.waiting import wait_for

DEADLINE = 120.0  # a busy 2-core machine: we wait for conditions, never assert on time
MiB = 1024 * 1024
ENDED = ("completed", "failed", "cancelled")


def redis_relay(lab: netlab.Lab) -> str:
    """``host:port`` at which the lab's hosts reach this machine's Redis."""
    redis = urlsplit(REDIS_URL)
    return lab.relay(redis.port or 6379, redis.hostname or "127.0.0.1")


@dataclass(frozen=True)
class Service:
    """Where the transfer service runs and what it is given."""

    lab: netlab.Lab
    host: netlab.Host
    redis: str  # `redis_relay`
    namespace: str
    data_dir: Path  # CASTRAY_DATA_DIR: files root <data>/files, inboxes <data>/inbox/<view node id>

    @property
    def files_root(self) -> Path:
        return self.data_dir / "files"

    def inbox(self, view_node_id: str) -> Path:
        return self.data_dir / "inbox" / view_node_id

    def log(self) -> str:
        path = self.data_dir / "transfer.log"
        return path.read_text(errors="replace")[-8000:] if path.exists() else "(no transfer log)"


def start_service(service: Service, **settings: str) -> subprocess.Popen[bytes]:
    """``castray transfer`` on ``service.host``; ``settings``: more ``CASTRAY_*`` variables."""
    service.data_dir.mkdir(parents=True, exist_ok=True)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CASTRAY_") and k != "RAY_ADDRESS"}
    environ.update({"CASTRAY_REDIS_URL": f"redis://{service.redis}/0", "CASTRAY_NAMESPACE": service.namespace,
                    "CASTRAY_DATA_DIR": str(service.data_dir), "CASTRAY_DISCOVERY_ALLOW": service.lab.subnet,
                    "CASTRAY_LOG_LEVEL": "INFO", **settings})
    with open(service.data_dir / "transfer.log", "ab") as log:
        return service.lab.popen(service.host, [sys.executable, "-m", "castray.cli", "transfer"],
                                 env=environ, stdout=log, stderr=subprocess.STDOUT)


@asynccontextmanager
async def services(service: Service, dashboards: list[str], redis_url: str, gateway_dir: Path,
                   **settings: str) -> AsyncIterator[TestClient[Any, Any]]:
    """The transfer service on its lab host, discovery watching ``dashboards``, the registry and a gateway
    (its test client yielded); all stopped however the test ends, the service's log printed if it failed."""
    proc = start_service(service, **settings)
    try:
        async with live_view(service.namespace, redis_url, dashboards, scan_hosts=[],
                             discovery_allow=[service.lab.subnet]), \
                gateway(service.namespace, gateway_dir) as client:
            yield client
    except BaseException:
        print(service.log())
        raise
    finally:
        processes.stop(proc)


async def alive_in_view(client: TestClient[Any, Any], nodes: list[local_ray.RayNode]
                        ) -> dict[str, dict[str, Any]]:
    """The view's rows of ``nodes`` (by Ray node id), once every one of them is ALIVE there."""
    async def placed() -> dict[str, dict[str, Any]] | None:
        rows = {n["ray_node_id"]: n for n in (await (await client.get("/api/nodes")).json())["nodes"]}
        wanted = {str(n.node_id): rows.get(str(n.node_id), {}) for n in nodes}
        return wanted if all(r.get("state") == "ALIVE" for r in wanted.values()) else None
    found: dict[str, dict[str, Any]] = await wait_for(placed, "the lab's nodes ALIVE in the view",
                                                      deadline=DEADLINE, interval=0.2)
    return found


def payload(service: Service, name: str, size: int) -> str:
    """A random file of ``size`` bytes at ``name`` under the service's files root; its sha256."""
    service.files_root.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    (service.files_root / name).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


async def send(client: TestClient[Any, Any], body: dict[str, Any]) -> str:
    """POST /api/transfers; the transfer's id."""
    resp = await client.post("/api/transfers", json=body)
    assert resp.status == 202, await resp.text()
    tid: str = (await resp.json())["id"]
    return tid


async def record(client: TestClient[Any, Any], tid: str) -> dict[str, Any]:
    body: dict[str, Any] = await (await client.get(f"/api/transfers/{tid}")).json()
    return body


async def ended(client: TestClient[Any, Any], tid: str, service: Service, deadline: float = DEADLINE
                ) -> dict[str, Any]:
    """The transfer's record once it has ended (if it does not, the record and the service's log)."""
    async def done() -> dict[str, Any] | None:
        body = await record(client, tid)
        return body if body["state"] in ENDED else None
    try:
        found: dict[str, Any] = await wait_for(done, f"transfer {tid} to end", deadline=deadline,
                                               interval=0.2)
    except AssertionError:
        raise AssertionError(f"{await record(client, tid)}\n{service.log()}") from None
    return found


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def verified(dest: dict[str, Any], sha256: str, size: int) -> None:
    """``dest`` (a destination of a transfer's record) completed, and its file has ``sha256`` and ``size``."""
    assert dest["state"] == "completed", dest
    assert os.path.getsize(dest["path"]) == size, dest
    assert sha256_of(dest["path"]) == dest["sha256"] == sha256, dest


def temp_files(directory: Path) -> list[str]:
    """The partial copies (a sink's temporary names) left in ``directory``."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir()
                  if p.name.startswith(TEMP_PREFIX) and p.name.endswith(TEMP_SUFFIX))
