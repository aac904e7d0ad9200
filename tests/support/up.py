"""A ``castray up`` subprocess for tests: the `Up` handle, an isolated environment, a starter that
stops every tree it started, and two ports that are no Redis (an HTTP server, a silent listener)."""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import psutil
import pytest

from castray.client import Client
from castray.local_ray import free_port

DEADLINE = 90.0  # generous: four services start on a busy 2-core machine


def get_json(url: str) -> Any:
    """GET ``url`` through castray.client (no token): its JSON; an error status raises its class, and a
    gateway not listening yet `GatewayUnreachable`, a ConnectionError (so an OSError: "not yet" to
    ``wait_for_blocking``)."""
    parts = urlsplit(url)
    with Client(f"{parts.scheme}://{parts.netloc}", token="", timeout=5) as api:
        return api.request("GET", parts.path, params=dict(parse_qsl(parts.query)) or None)


@dataclass
class Up:
    """One running ``castray up``."""

    process: subprocess.Popen[bytes]
    port: int
    out_path: Path
    err_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def tree(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            return list(psutil.Process(self.process.pid).children(recursive=True))
        return []

    def child(self, service: str) -> psutil.Process | None:
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                if proc.cmdline()[-2:] == ["castray.cli", service]:
                    return proc
        return None

    def status_has_node(self, ray_node_id: str) -> bool:
        status = get_json(f"{self.base}/api/status")
        return any(n.get("ray_node_id") == ray_node_id and n.get("state") == "ALIVE"
                   for n in status["node_statuses"])

    def stop(self, sig: int = signal.SIGINT) -> tuple[list[psutil.Process], int | None]:
        """SIGINT (a Ctrl-C) or ``sig``; wait up to 10 s for it and every process of its tree.

        Returns the processes still alive and the exit code (None if still running)."""
        procs = [*self.tree(), psutil.Process(self.process.pid)]
        self.process.send_signal(sig)
        _gone, alive = psutil.wait_procs(procs, timeout=10)
        return alive, self.process.poll()


@pytest.fixture
def isolated_env(namespace: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment of a `castray up` that sees no Ray cluster but the ones a test names."""
    empty_ray_dir = tmp_path / "no-ray"
    empty_ray_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASTRAY_") and k != "RAY_ADDRESS"}
    env.update({
        "CASTRAY_NAMESPACE": namespace,
        "CASTRAY_REDIS_URL": redis_url,
        "CASTRAY_DATA_DIR": str(tmp_path / "data"),
        "CASTRAY_SCAN_HOSTS": "",  # never scan 8265-8269: other people's clusters live there
        "CASTRAY_RAY_TEMP_DIRS": str(empty_ray_dir),  # nor read /tmp/ray
        "RAY_TMPDIR": str(empty_ray_dir),
        "CASTRAY_RAY_DASHBOARD_PORT": str(free_port()),  # a head `up` starts never takes 8265
        "CASTRAY_LOG_LEVEL": "INFO",
    })
    return env


@pytest.fixture
def start_up(tmp_path: Path) -> Iterator[Callable[..., Up]]:
    """Start ``castray up`` subprocesses; each is stopped (and its tree killed) after the test."""
    started: list[Up] = []

    def start(env: dict[str, str], *args: str, port: int | None = None) -> Up:
        port = port or free_port()
        n = len(started)
        out_path, err_path = tmp_path / f"up{n}.out", tmp_path / f"up{n}.err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "castray.cli", "up", "--port", str(port), *args],
                                    env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        up = Up(proc, port, out_path, err_path)
        started.append(up)
        return up

    yield start
    for up in started:
        if up.process.poll() is None:
            alive, _ = up.stop()
            for proc in alive:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            up.process.wait(timeout=5)


class _Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Accepts connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])
