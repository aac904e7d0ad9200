"""A real Docker engine for tests: dockerd started when none runs, the local stand-in base images, and one
compose project (the repository's docker-compose.yml, unchanged) that is always taken down with its
volumes, even when a test fails.

Synchronous on purpose: these are fixtures' and tests' steps, driven one after another by the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from castray.client import Client, ClientError
from castray.shared.transfers import TransferRequest
from tests.support import processes
from tests.support.waiting import STARTING, wait_for_blocking

ROOT = Path(__file__).resolve().parent.parent.parent
STANDINS = ROOT / "docker" / "standins" / "build.sh"


class ComposeError(AssertionError):
    """A docker or docker-compose command failed; the message carries its output."""


def run(argv: list[str], *, timeout: float = 600, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if check and out.returncode != 0:
        raise ComposeError(f"{' '.join(argv)} exited {out.returncode}:\n{out.stdout[-3000:]}\n"
                           f"{out.stderr[-3000:]}")
    return out


def _engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


@contextlib.contextmanager
def docker_engine() -> Iterator[None]:
    """A Docker engine that answers: the running one, or a ``dockerd`` started here (as root) and stopped
    when the block ends."""
    for tool in ("docker", "docker-compose"):
        if shutil.which(tool) is None:
            raise ComposeError(f"{tool} is not installed (apt-get install docker.io docker-compose; "
                               ".ci/run does it)")
    if _engine_answers():
        yield
        return
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if os.geteuid() != 0 or not Path(dockerd).exists():
        raise ComposeError("no Docker engine answers, and this user cannot start dockerd (root and "
                           "Debian's docker.io are needed)")
    proc = subprocess.Popen([dockerd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        def engine_up() -> bool:
            if proc.poll() is not None:
                raise ComposeError(f"dockerd did not come up (exit status {proc.poll()})")
            return _engine_answers()

        try:
            wait_for_blocking(engine_up, "dockerd", deadline=60, interval=0.5, ignoring=())
        except AssertionError:
            raise ComposeError(f"dockerd did not come up (exit status {proc.poll()})") from None
        yield
    finally:
        processes.stop(proc, timeout=30)


def standin_images() -> dict[str, str]:
    """CASTRAY_BASE_IMAGE and CASTRAY_REDIS_IMAGE: the local stand-ins, built once per machine (their tags
    are a hash of docker/standins/ and of the CA bundle, so a second call builds nothing)."""
    out = run(["bash", str(STANDINS)], timeout=900)
    images = dict(line.split("=", 1) for line in out.stdout.split() if "=" in line)
    assert set(images) == {"CASTRAY_BASE_IMAGE", "CASTRAY_REDIS_IMAGE"}, out.stdout
    return images


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """One compose project of docker-compose.yml, under a name of its own, published on a free port."""

    def __init__(self, images: dict[str, str]) -> None:
        self.project = f"castray-e2e-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **images, "CASTRAY_PUBLISH": f"127.0.0.1:{self.port}",
                    "CASTRAY_IMAGE_TAG": "e2e"}
        self._api: Client | None = None

    def compose(self, *args: str, timeout: float = 600,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["docker-compose", "-p", self.project, *args], timeout=timeout, env=self.env, check=check)

    # -- containers ----------------------------------------------------------------------------------
    def containers(self, service: str | None = None, *, all_states: bool = False) -> list[str]:
        argv = ["docker", "ps", "-q", "--no-trunc",
                "--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            argv += ["--filter", f"label=com.docker.compose.service={service}"]
        if all_states:
            argv.append("-a")
        return run(argv).stdout.split()

    def inspect(self, cid: str) -> dict[str, Any]:
        return dict(json.loads(run(["docker", "inspect", cid]).stdout)[0])

    def health(self) -> dict[str, str]:
        """Container name -> its health status ("healthy", "starting", ...) or state when it has none."""
        result = {}
        for cid in self.containers():
            state = self.inspect(cid)["State"]
            result[cid[:12]] = (state.get("Health") or {}).get("Status") or state["Status"]
        return result

    def wait_healthy(self, timeout: float = 300) -> dict[str, str]:
        health: dict[str, str] = {}

        def all_healthy() -> dict[str, str] | None:
            nonlocal health
            health = self.health()
            return health if health and all(s == "healthy" for s in health.values()) else None

        try:
            return dict(wait_for_blocking(all_healthy, "every container healthy", deadline=timeout,
                                          interval=1, ignoring=()))
        except AssertionError:
            raise ComposeError(f"not every container is healthy after {timeout:.0f} s: {health}\n"
                               + self.compose("logs", "--tail=40", check=False).stdout[-6000:]) from None

    def ip_of(self, cid: str) -> str:
        networks = self.inspect(cid)["NetworkSettings"]["Networks"]
        return str(next(iter(networks.values()))["IPAddress"])

    def container_of_ip(self, ip: str) -> str:
        for cid in self.containers():
            networks = self.inspect(cid)["NetworkSettings"]["Networks"]
            if any(n.get("IPAddress") == ip for n in networks.values()):
                return cid
        raise ComposeError(f"no container of {self.project} has the address {ip}")

    def exec(self, cid: str, *argv: str, timeout: float = 120) -> str:
        return run(["docker", "exec", cid, *argv], timeout=timeout).stdout

    def kill(self, cid: str) -> None:
        run(["docker", "kill", cid])

    def remove(self, cid: str) -> None:
        run(["docker", "rm", "-f", cid])

    def sha256_in(self, cid: str, path: str) -> str:
        return self.exec(cid, "sha256sum", path).split()[0]

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes of this project still on the engine."""
        label = f"label=com.docker.compose.project={self.project}"
        return {
            "containers": run(["docker", "ps", "-aq", "--filter", label]).stdout.split(),
            "networks": run(["docker", "network", "ls", "-q", "--filter", label]).stdout.split(),
            "volumes": run(["docker", "volume", "ls", "-q", "--filter", label]).stdout.split(),
        }

    def down(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None
        self.compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False)

    # -- the gateway, through the published port -----------------------------------------------------
    @property
    def api(self) -> Client:
        """The gateway through the published port, with castray.client (made on first use)."""
        if self._api is None:
            self._api = Client(self.url, token="", timeout=60)
        return self._api

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One call's JSON answer (a page's text); an error status raises castray.client's error for it."""
        return self.api.request(method, path, json=body)

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def wait_for(self, what: str, probe: Any, timeout: float = 180, interval: float = 0.25) -> Any:
        """Call ``probe()`` until it returns something truthy (errors count as not yet); a timeout says
        why with the stack's last logs."""
        try:
            return wait_for_blocking(probe, what, deadline=timeout, interval=interval,
                                     ignoring=(*STARTING, AssertionError, ClientError))
        except AssertionError as timed_out:
            raise ComposeError(f"{timed_out}\n"
                               + self.compose("logs", "--tail=30", check=False).stdout[-6000:]) from None

    def transfer(self, body: dict[str, Any]) -> str:
        return self.api.create_transfer(TransferRequest.model_validate(body)).id

    def finished(self, transfer_id: str, timeout: float = 240) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            record = dict(self.get(f"/api/transfers/{transfer_id}"))
            return record if record["state"] in ("completed", "failed", "cancelled", "partial") else None
        return dict(self.wait_for(f"transfer {transfer_id} finished", done, timeout=timeout, interval=0.5))

    def alive_nodes(self) -> list[dict[str, Any]]:
        return [n for n in self.get("/api/nodes")["nodes"] if n["state"] == "ALIVE"]
