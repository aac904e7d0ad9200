"""A network lab on one machine: H hosts, each a network namespace with an address of its own, joined by
veth pairs to one switch, so that CastRay and Ray can be tested across hosts (root and iproute2 needed).

Layout of a lab named ``crl1a2b3c`` in ``10.77.<n>.0/24`` (``<n>`` free on this machine, the name random,
so that two runs never collide):

- ``crl1a2b3c-sw``: a namespace holding the bridge. It is a namespace of its own, not the machine's, so
  that no firewall of the machine (Docker's FORWARD DROP, with bridge netfilter) sees the lab's traffic;
- ``crl1a2b3c-h<i>``: host i at ``10.77.<n>.<10+i>`` on its ``eth0``, with no default route: the hosts
  reach each other and the machine, nothing else;
- the machine itself at ``10.77.<n>.1`` (``crl1a2b3cgw``), so that services in the root namespace
  (discovery, the gateway) reach every host.

A host's link is shaped at both ends (rate with tbf, latency and loss with netem), is cut by setting the
switch's end down and healed by setting it up. Bytes each host sent and received are its ``eth0``
counters. Every lab is recorded in ``STATE_DIR`` before anything is made, so that ``down`` removes what
a crashed run left. Teardown kills every process in the lab's namespaces by id (``ip netns pids``), never
``ray stop`` (which stops every Ray on the machine), then deletes the namespaces (and with them the veths
and the bridge).

By hand: ``python -m tests.support.netlab up --hosts 4 --rate 400mbit --ray``, then
``python -m tests.support.netlab down`` (labs whose owner is gone) or ``down --all``.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from castray import local_ray
from tests.support.ray_nodes import start_worker

STATE_DIR = Path(os.environ.get("CASTRAY_NETLAB_DIR", "/tmp/castray-netlab"))
PREFIX = "crl"
NAME = re.compile(rf"^{PREFIX}[0-9a-f]{{6}}$")
BY_HAND = 0  # the owner of a lab started from the command line: never stale, only `down NAME` or --all


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


class NoNetem(RuntimeError):
    """The kernel has no netem qdisc: a link's delay and loss cannot be shaped (its rate can)."""


@dataclass(frozen=True)
class Shape:
    """A link's shape, each end: ``rate`` as tc writes it (``400mbit``), ``delay`` (``5ms``), ``loss`` (%)."""

    rate: str | None = None
    delay: str | None = None
    loss: float = 0.0


@dataclass(frozen=True)
class Host:
    name: str
    netns: str
    ip: str
    port: str  # the switch's end of its link, in the switch namespace

    def exec_prefix(self) -> tuple[str, ...]:
        """Put before a command to run it on this host (``ip netns exec`` execs it: the pid is kept)."""
        return ("ip", "netns", "exec", self.netns)


@dataclass
class Lab:
    name: str
    subnet: str
    hosts: list[Host]
    owner: int
    temp_root: str
    ray: list[local_ray.RayNode] = field(default_factory=list)
    relays: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.name}-sw"

    @property
    def gateway_ip(self) -> str:
        return str(ipaddress.ip_network(self.subnet)[1])

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    # --- links ----------------------------------------------------------------------------------------
    def shape(self, host: Host, shape: Shape) -> None:
        """Shape both ends of ``host``'s link (replacing any shape it had): the rate with tbf, delay and
        loss with netem (a kernel without netem, as some sandboxes have, shapes the rate only, and
        refuses delay and loss with `NoNetem`)."""
        for netns, dev in ((host.netns, "eth0"), (self.switch, host.port)):
            subprocess.run(["tc", "-n", netns, "qdisc", "del", "dev", dev, "root"], capture_output=True)
            tc = ["tc", "-n", netns, "qdisc", "add", "dev", dev]
            tbf = ["tbf", "rate", shape.rate or "", "burst", "256kb", "latency", "100ms"]
            if shape.delay or shape.loss:
                netem = ["netem", "delay", shape.delay or "0ms", "loss", f"{shape.loss:g}%",
                         "limit", "100000"]
                if subprocess.run([*tc, "root", "handle", "1:", *netem], capture_output=True).returncode:
                    raise NoNetem("tc netem is not in this kernel (CONFIG_NET_SCH_NETEM): no delay or loss")
                if shape.rate:
                    subprocess.run([*tc, "parent", "1:1", "handle", "10:", *tbf], check=True)
            elif shape.rate:
                subprocess.run([*tc, "root", *tbf], check=True)

    def cut(self, host: Host) -> None:
        """Unplug ``host``: nothing reaches it or leaves it until `heal`."""
        ip("-n", self.switch, "link", "set", host.port, "down")

    def heal(self, host: Host) -> None:
        ip("-n", self.switch, "link", "set", host.port, "up")

    def counters(self, host: Host) -> tuple[int, int]:
        """(bytes sent, bytes received) by ``host`` since its link was made."""
        out = json.loads(ip("-n", host.netns, "-s", "-j", "link", "show", "dev", "eth0").stdout)
        stats = out[0]["stats64"]
        return int(stats["tx"]["bytes"]), int(stats["rx"]["bytes"])

    # --- processes ------------------------------------------------------------------------------------
    def popen(self, host: Host, args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        """Run ``args`` on ``host`` in a process group of its own (killed with the lab)."""
        proc: subprocess.Popen[bytes] = subprocess.Popen([*host.exec_prefix(), *args], start_new_session=True,
                                                         **kw)
        return proc

    def start_head(self, host: Host, *, num_cpus: int = 1, env: dict[str, str] | None = None
                   ) -> local_ray.RayNode:
        """A Ray head on ``host`` (its GCS and dashboard at the host's address), on free ports."""
        temp = self._temp_dir(host)
        args, ports = local_ray.head_command(temp, num_cpus=num_cpus, node_ip=host.ip)
        node = local_ray.run_head([*host.exec_prefix(), *args], temp, ports, env=env, host=host.ip)
        self.ray.append(node)
        return node

    def start_worker(self, host: Host, head: local_ray.RayNode, *, num_cpus: int = 1,
                     env: dict[str, str] | None = None) -> local_ray.RayNode:
        """A Ray node on ``host`` joined to ``head`` (on another host, or this one)."""
        node = start_worker(head, num_cpus=num_cpus, env=env, wrap=host.exec_prefix(), node_ip=host.ip,
                            temp_dir=self._temp_dir(host))
        self.ray.append(node)
        return node

    def relay(self, target_port: int, target_host: str = "127.0.0.1") -> str:
        """``host:port`` at which every lab host reaches ``target_host:target_port`` of this machine (its
        Redis, which listens on loopback only), through a relay on this machine's lab address."""
        port = local_ray.free_port()
        proc = subprocess.Popen([sys.executable, "-m", "tests.support.relay", self.gateway_ip, str(port),
                                 target_host, str(target_port)], stdout=subprocess.PIPE,
                                start_new_session=True, cwd=Path(__file__).parents[2])
        self.relays.append(proc)
        _save(self)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready", "no relay"
        return f"{self.gateway_ip}:{port}"

    def _temp_dir(self, host: Host) -> str:
        path = Path(self.temp_root) / host.name  # short: Ray's socket paths must fit in 107 bytes
        path.mkdir(parents=True, exist_ok=True)
        return str(path)


# --- making and removing labs ---------------------------------------------------------------------------
def create(hosts: int, shape: Shape = Shape(), *, owner: int | None = None) -> Lab:
    """A new lab of ``hosts`` hosts, each link shaped by ``shape``; `destroy` it (or use `running`)."""
    if not 1 <= hosts <= 200:
        raise ValueError("a lab has 1 to 200 hosts")
    name = f"{PREFIX}{secrets.token_hex(3)}"
    net = ipaddress.ip_network(f"10.77.{_free_third_octet()}.0/24")
    lab = Lab(name, str(net), [Host(f"h{i}", f"{name}-h{i}", str(net[10 + i]), f"{name}s{i}")
                               for i in range(1, hosts + 1)],
              os.getpid() if owner is None else owner, tempfile.mkdtemp(prefix=f"{name}-", dir="/tmp"))
    _save(lab)
    try:
        ip("netns", "add", lab.switch)
        ip("-n", lab.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", lab.switch, "link", "set", "br0", "up")
        ip("-n", lab.switch, "link", "set", "lo", "up")
        _plug(lab, f"{name}gw", None, f"{lab.gateway_ip}/24")
        for h in lab.hosts:
            ip("netns", "add", h.netns)
            _plug(lab, h.port, h.netns, f"{h.ip}/24")
            lab.shape(h, shape)
    except BaseException:
        destroy(lab.name)
        raise
    return lab


def _plug(lab: Lab, port: str, netns: str | None, address: str) -> None:
    """A veth from the switch's ``port`` to ``eth0`` of ``netns`` (to the machine itself when None)."""
    end = "eth0" if netns else f"{lab.name}gp"
    if netns:
        ip("link", "add", port, "netns", lab.switch, "type", "veth", "peer", "name", end, "netns", netns)
        ip("-n", netns, "link", "set", "lo", "up")
        ip("-n", netns, "addr", "add", address, "dev", end)
        ip("-n", netns, "link", "set", end, "up")
        sw_end = port
    else:  # the machine's end keeps the name `port`; the switch's is `end`
        ip("link", "add", port, "type", "veth", "peer", "name", end, "netns", lab.switch)
        ip("addr", "add", address, "dev", port)
        ip("link", "set", port, "up")
        sw_end = end
    ip("-n", lab.switch, "link", "set", sw_end, "master", "br0")
    ip("-n", lab.switch, "link", "set", sw_end, "up")


def _free_third_octet() -> int:
    used = set(re.findall(r"inet 10\.77\.(\d+)\.", ip("-o", "addr").stdout))
    used |= {str(s.get("octet")) for s in _states()}
    free = [n for n in range(1, 255) if str(n) not in used]
    if not free:
        raise RuntimeError("every 10.77.<n>.0/24 is taken")
    return secrets.choice(free)


def destroy(name: str) -> None:
    """Remove lab ``name``: kill its processes by id, delete its namespaces, the machine's veth, its state
    and temp dirs. Idempotent; what is already gone is skipped."""
    if not NAME.match(name):
        raise ValueError(f"{name!r} is not a lab's name")
    namespaces = [n for n in _namespaces() if n.startswith(f"{name}-")]
    for netns in namespaces:
        _kill_all(netns)
    for netns in namespaces:
        ip("netns", "del", netns, check=False)
    ip("link", "del", f"{name}gw", check=False)  # gone with its peer already, unless the switch never was
    state = _state_file(name)
    with contextlib.suppress(OSError, ValueError, KeyError):
        record = json.loads(state.read_text())
        for pid in record.get("relays", []):  # in this machine's namespace: killed by pid, if still ours
            with contextlib.suppress(psutil.Error):
                if "tests.support.relay" in psutil.Process(pid).cmdline():
                    psutil.Process(pid).kill()
        shutil.rmtree(record["temp_root"], ignore_errors=True)
    state.unlink(missing_ok=True)


def _kill_all(netns: str) -> None:
    """SIGKILL every process in ``netns`` until none is left (a dying Ray may still be forking)."""
    for _ in range(50):
        pids = [int(p) for p in ip("netns", "pids", netns, check=False).stdout.split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)  # a dying Ray may still be forking: kill again until none is left


def _namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list", check=False).stdout.splitlines() if line.strip()]


def labs() -> dict[str, int | None]:
    """Every lab on this machine, by name: its owner's pid (`BY_HAND` if started by hand; None if its
    state is gone)."""
    found: dict[str, int | None] = {n.partition("-")[0]: None for n in _namespaces()
                                    if NAME.match(n.partition("-")[0])}
    for s in _states():
        found[str(s["name"])] = int(s["owner"])
    return found


def stale(owner: int | None) -> bool:
    """A lab whose owning process is gone (or unknown): left by a crashed run."""
    if owner == BY_HAND:
        return False
    if owner is None:
        return True
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _state_file(name: str) -> Path:
    return STATE_DIR / f"{name}.json"


def _save(lab: Lab) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    record = {"name": lab.name, "subnet": lab.subnet, "owner": lab.owner, "temp_root": lab.temp_root,
              "octet": int(lab.subnet.split(".")[2]), "hosts": [asdict(h) for h in lab.hosts],
              "relays": [r.pid for r in lab.relays]}
    _state_file(lab.name).write_text(json.dumps(record))


def _states() -> list[dict[str, Any]]:
    out = []
    for path in STATE_DIR.glob(f"{PREFIX}*.json") if STATE_DIR.exists() else []:
        with contextlib.suppress(OSError, ValueError):
            out.append(json.loads(path.read_text()))
    return out


@contextlib.contextmanager
def running(hosts: int, shape: Shape = Shape()) -> Iterator[Lab]:
    """A lab for the length of the ``with``, destroyed however it ends (labs that crashed runs left
    are removed first)."""
    for name, owner in labs().items():
        if stale(owner):
            destroy(name)
    lab = create(hosts, shape)
    try:
        yield lab
    finally:
        for node in lab.ray:  # each by its process group, and reaped; `destroy` kills whatever is left
            node.stop()
        for relay in lab.relays:
            relay.kill()
            relay.wait()
        destroy(lab.name)


# --- command line -----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.netlab",
                                     description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="make a lab and print its hosts")
    up.add_argument("--hosts", type=int, default=4)
    up.add_argument("--rate", help="each link's rate, e.g. 400mbit")
    up.add_argument("--delay", help="each link's one-way latency, e.g. 5ms")
    up.add_argument("--loss", type=float, default=0.0, help="each link's loss, in percent")
    up.add_argument("--ray", action="store_true", help="a Ray head on h1 and a Ray node on every other host")
    down = sub.add_parser("down", help="remove labs left by crashed runs, or the ones named")
    down.add_argument("names", nargs="*")
    down.add_argument("--all", action="store_true", help="every lab on this machine, even live ones")
    sub.add_parser("list", help="the labs on this machine and their owners")
    args = parser.parse_args(argv)

    if args.command == "up":
        lab = create(args.hosts, Shape(args.rate, args.delay, args.loss), owner=BY_HAND)
        try:
            print(f"lab {lab.name}: {lab.subnet}, this machine at {lab.gateway_ip}")
            for h in lab.hosts:
                print(f"  {h.name} {h.ip:<15} ip netns exec {h.netns} <command>")
            if args.ray:
                head = lab.start_head(lab.hosts[0])
                for h in lab.hosts[1:]:
                    lab.start_worker(h, head)
                print(f"Ray: GCS {head.gcs_address}, dashboard {head.dashboard_url}")
        except BaseException:
            destroy(lab.name)
            raise
        print(f"remove it with: python -m tests.support.netlab down {lab.name}")
        return 0
    found = labs()
    if args.command == "list":
        for name, owner in sorted(found.items()):
            whose = "by hand" if owner == BY_HAND else f"owner {owner}"
            print(name, whose, "(stale)" if stale(owner) else "")
        return 0
    chosen = args.names or [n for n, owner in found.items() if args.all or stale(owner)]
    for name in chosen:
        destroy(name)
        print(f"removed {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
