"""Starting and stopping Ray nodes on this machine, on free ports, by process id.

Used by ``castray up`` (a local head when no cluster is found), by ``castray transfer --join-ray`` and by
the tests (heads they start and always stop; their workers are in ``tests/support/ray_nodes.py``). Each
node runs as ``ray start --block`` in a process group of its own, so stopping it is killing that group:
nothing else on the machine is touched (unlike ``ray stop``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from castray.shared import lifecycle


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_outside(lo: int, hi: int) -> int:
    """A free port not in ``[lo, hi]`` (Ray refuses a component port inside the worker port range)."""
    while True:
        port = free_port()
        if not lo <= port <= hi:
            return port


def ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (Linux; else its default)."""
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def free_port_range(size: int = 200, low: int = 10000, high: int | None = None) -> tuple[int, int]:
    """A range of ``size`` ports, all free now (worker ports are bound lazily). By default below the
    kernel's ephemeral range, as Ray's own default (10002-19999) is: any outgoing connection may take an
    ephemeral port, and a Ray worker or driver that cannot bind the port its raylet gave it crashes
    ("Failed to start the grpc server"), which happened in our tests."""
    import random

    high = high if high is not None else ephemeral_ports()[0]
    for _ in range(100):
        start = random.randrange(low, high - size)
        if all(is_free(p) for p in range(start, start + size)):  # none held by another server now
            return start, start + size - 1
    raise RuntimeError("no free port range")


def is_free(port: int) -> bool:
    """Is ``port`` on the loopback free to bind now (for a Ray node's port: `castray up` and free ranges)?"""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ray_executable() -> str:
    candidate = Path(sys.executable).with_name("ray")
    return str(candidate) if candidate.exists() else "ray"


@dataclass
class RayNode:
    """One ``ray start --block`` process group."""

    process: subprocess.Popen[bytes]
    temp_dir: str
    gcs_port: int
    dashboard_port: int | None = None
    is_head: bool = False
    log_path: str = ""
    node_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    host: str = "127.0.0.1"  # where its GCS and dashboard are reached (a lab host's address in tests)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def gcs_address(self) -> str:
        return f"{self.host}:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.host}:{self.dashboard_port}"

    def raylet_pid(self) -> int | None:
        """The pid of this node's raylet (to SIGTERM or SIGKILL just the node)."""
        import psutil

        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                if child.name() == "raylet":
                    return int(child.pid)
        return None

    def stop(self) -> None:
        """Kill the node's whole process group at once (ray's own drain takes ~30 s)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


def launch(
    args: list[str], temp_dir: str, log_path: str, env: dict[str, str] | None, die_with_parent: bool = False
) -> subprocess.Popen[bytes]:
    """Run ``args`` (a ``ray start --block``) in a process group of its own, its output to ``log_path``."""
    Path(temp_dir).mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "RAY_TMPDIR": temp_dir, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
    # With die_with_parent, `ray start --block` gets SIGTERM when we die, and then stops its whole node.
    preexec = lifecycle.die_with_parent() if die_with_parent else None
    with open(log_path, "ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=full_env, start_new_session=True, preexec_fn=preexec)


@dataclass(frozen=True)
class HeadPorts:
    gcs: int
    dashboard: int


def start_args(
    temp_dir: str,
    worker_ports: tuple[int, int],
    of: HeadPorts | str,
    *,
    num_cpus: int,
    object_store_memory: int,
    labels: dict[str, str] | None = None,
    node_name: str | None = None,
    node_ip: str | None = None,
) -> list[str]:
    """``ray start --block`` for a head listening on ``of`` or a node joining the GCS at address ``of``.

    Its workers take ports in ``worker_ports`` and every other port is a free one outside that range, as
    Ray refuses a component port inside it. ``node_ip``: the node's own address, where a head's dashboard
    listens too (a host of a network lab, reached from outside it); else Ray's choice and loopback.
    """
    lo, hi = worker_ports
    args = [ray_executable(), "start", "--block"]
    if isinstance(of, HeadPorts):
        args += ["--head", f"--port={of.gcs}", f"--dashboard-port={of.dashboard}",
                 f"--dashboard-host={node_ip or '127.0.0.1'}",
                 f"--ray-client-server-port={free_port_outside(lo, hi)}"]
    else:
        args.append(f"--address={of}")
    args += [f"--num-cpus={num_cpus}", f"--object-store-memory={object_store_memory}",
             f"--dashboard-agent-listen-port={free_port_outside(lo, hi)}", f"--min-worker-port={lo}",
             f"--max-worker-port={hi}", f"--temp-dir={temp_dir}", "--disable-usage-stats",
             "--include-log-monitor=false"]
    if labels:
        args.append(f"--labels={json.dumps(labels)}")
    if node_name:
        args.append(f"--node-name={node_name}")
    if node_ip:
        args.append(f"--node-ip-address={node_ip}")
    return args


def head_command(
    temp_dir: str, *, num_cpus: int = 1, dashboard_port: int | None = None,
    object_store_memory: int = 200 * 1024 * 1024, node_ip: str | None = None,
) -> tuple[list[str], HeadPorts]:
    """The ``ray start`` of a head with its own temp dir and free ports, and the ports it will listen on."""
    lo, hi = free_port_range()
    ports = HeadPorts(free_port_outside(lo, hi), dashboard_port or free_port_outside(lo, hi))
    args = start_args(temp_dir, (lo, hi), ports, num_cpus=num_cpus, object_store_memory=object_store_memory,
                      node_ip=node_ip)
    return args, ports


def run_head(
    args: list[str], temp_dir: str, ports: HeadPorts, *, env: dict[str, str] | None = None,
    wait: float = 60.0, die_with_parent: bool = False, host: str = "127.0.0.1",
) -> RayNode:
    """Run a head's ``args``; return once its dashboard (at ``host``) lists it ALIVE."""
    log_path = os.path.join(temp_dir, "castray-head.log")
    process = launch(args, temp_dir, log_path, env, die_with_parent)
    node = RayNode(process, temp_dir, ports.gcs, ports.dashboard, True, log_path, host=host)
    try:
        node.node_id = wait_listed(node, node.dashboard_url,
                                   lambda rows: [r for r in rows if r["is_head_node"]], wait)
    except BaseException:
        node.stop()
        raise
    return node


def start_head(
    temp_dir: str,
    *,
    num_cpus: int = 1,
    dashboard_port: int | None = None,
    object_store_memory: int = 200 * 1024 * 1024,
    env: dict[str, str] | None = None,
    wait: float = 60.0,
    die_with_parent: bool = False,
) -> RayNode:
    """Start a head with its own temp dir and free ports; return once its dashboard lists it ALIVE.

    ``die_with_parent``: the head stops when the calling process dies, even by SIGKILL (Linux).
    """
    args, ports = head_command(temp_dir, num_cpus=num_cpus, dashboard_port=dashboard_port,
                               object_store_memory=object_store_memory)
    return run_head(args, temp_dir, ports, env=env, wait=wait, die_with_parent=die_with_parent)


def list_nodes(dashboard_url: str, timeout: float = 2.0) -> list[dict[str, Any]]:
    """Rows of the dashboard's ``/api/v0/nodes`` (blocking; for tests and start-up only)."""
    url = f"{dashboard_url}/api/v0/nodes?limit=10000&detail=true"
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return list(json.loads(resp.read())["data"]["result"]["result"])


def wait_listed(node: RayNode, dashboard_url: str, pick: Any, wait: float) -> str:
    """The id of the first row ``pick`` keeps from the dashboard's node list, once there is one."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise RuntimeError(f"ray start exited with {node.process.returncode}; see {node.log_path}")
        with contextlib.suppress(OSError, ValueError, KeyError):
            rows = pick(list_nodes(dashboard_url))
            if rows:
                return str(rows[0]["node_id"])
        time.sleep(0.2)
    raise TimeoutError(f"Ray node did not come up within {wait:.0f} s; see {node.log_path}")


def join_cluster(
    gcs_address: str,
    temp_dir: str,
    *,
    num_cpus: int = 0,
    object_store_memory: int = 200 * 1024 * 1024,
    labels: dict[str, str] | None = None,
    wait: float = 60.0,
) -> RayNode:
    """Make this host a node of the cluster at ``gcs_address``; return once its raylet runs.

    A Ray driver (``ray.init(address=...)``) needs a raylet on its own host, so a transfer worker in a
    container of its own joins the cluster first (with no CPUs: it schedules nothing there itself).
    """
    lo, hi = free_port_range()
    log_path = os.path.join(temp_dir, f"castray-join-{lo}.log")
    args = start_args(temp_dir, (lo, hi), gcs_address, num_cpus=num_cpus,
                      object_store_memory=object_store_memory, labels=labels)
    port = int(gcs_address.rpartition(":")[2])
    node = RayNode(launch(args, temp_dir, log_path, None, die_with_parent=True), temp_dir, port, None, False,
                   log_path)
    try:
        node.node_id = _wait_for_raylet(node, wait)
    except BaseException:
        node.stop()
        raise
    return node


def _wait_for_raylet(node: RayNode, wait: float) -> str:
    """The node id on the command line of ``node``'s raylet, once that raylet runs."""
    import psutil

    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise RuntimeError(f"ray start exited with {node.process.returncode}; see {node.log_path}")
        pid = node.raylet_pid()
        with contextlib.suppress(psutil.Error):
            for arg in psutil.Process(pid).cmdline() if pid else []:
                if arg.startswith("--node_id="):
                    return str(arg).removeprefix("--node_id=")
        time.sleep(0.2)
    raise TimeoutError(f"Ray node did not come up within {wait:.0f} s; see {node.log_path}")
