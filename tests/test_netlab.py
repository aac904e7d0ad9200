"""The network lab itself (`tests.support.netlab`, no Ray): hosts that reach each other and the machine
but nothing else, bytes counted per host, a link cut and healed, a shaped link, and teardown that leaves
nothing, from the fixture and from the command line's ``down`` after a crashed run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support import netlab

MiB = 1024 * 1024
# Runs on a host: connect to host:port within 2 s and send n bytes; exit 0 if all were sent, 1 if it
# could not connect.
SEND = """
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    s = socket.create_connection((host, port), timeout=2)
except OSError:
    sys.exit(1)
s.sendall(bytes(n)); s.close()
"""
# Runs on a host: listen on port, print "ready", then read everything one connection sends and print
# how many bytes that was.
RECEIVE = """
import socket, sys
srv = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
conn, _ = srv.accept(); total = 0
while chunk := conn.recv(1 << 20):
    total += len(chunk)
print(total, flush=True)
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[netlab.Lab]:
    with netlab.running(2, netlab.Shape(rate="200mbit")) as made:
        yield made


def send(lab: netlab.Lab, src: netlab.Host, dst: netlab.Host, n: int, port: int = 5001) -> int | None:
    """Bytes ``dst`` read from ``src`` sending ``n`` to it; None if ``src`` could not connect."""
    receiver = lab.popen(dst, [sys.executable, "-c", RECEIVE, str(port)], stdout=subprocess.PIPE)
    try:
        assert receiver.stdout is not None and receiver.stdout.readline().strip() == b"ready"
        sender = lab.popen(src, [sys.executable, "-c", SEND, dst.ip, str(port), str(n)])
        if sender.wait(timeout=120) != 0:
            return None
        return int(receiver.stdout.readline())
    finally:
        receiver.kill()
        receiver.wait()


def reaches(lab: netlab.Lab, host: netlab.Host, target: str) -> bool:
    """Does a TCP connect from ``host`` to ``target``:9 get an answer (a refusal counts: it arrived)?"""
    code = "import socket,sys\ntry: socket.create_connection((sys.argv[1], 9), timeout=1)\n" \
           "except ConnectionRefusedError: sys.exit(0)\nexcept OSError: sys.exit(1)"
    return lab.popen(host, [sys.executable, "-c", code, target]).wait(timeout=30) == 0


def test_hosts_reach_each_other_and_the_machine_but_nothing_else(lab: netlab.Lab) -> None:
    h1, h2 = lab.hosts
    assert reaches(lab, h1, h2.ip) and reaches(lab, h1, lab.gateway_ip)
    assert not reaches(lab, h1, "192.0.2.2") and not reaches(lab, h1, "1.1.1.1")
    routes = subprocess.run([*h1.exec_prefix(), "ip", "-j", "route"], capture_output=True, text=True,
                            check=True).stdout
    assert [r["dst"] for r in json.loads(routes)] == [lab.subnet]


def test_bytes_are_counted_per_host_and_a_cut_link_carries_nothing_until_healed(lab: netlab.Lab) -> None:
    h1, h2 = lab.hosts
    sent0, _ = lab.counters(h1)
    _, received0 = lab.counters(h2)
    assert send(lab, h1, h2, 8 * MiB) == 8 * MiB
    assert lab.counters(h1)[0] - sent0 >= 8 * MiB
    assert lab.counters(h2)[1] - received0 >= 8 * MiB

    lab.cut(h2)
    try:
        assert send(lab, h1, h2, MiB, port=5002) is None
        assert not reaches(lab, h2, lab.gateway_ip)
    finally:
        lab.heal(h2)
    assert send(lab, h1, h2, MiB, port=5003) == MiB


def test_links_are_shaped_at_both_ends(lab: netlab.Lab) -> None:
    h1, _ = lab.hosts
    for netns, dev in ((h1.netns, "eth0"), (lab.switch, h1.port)):
        out = subprocess.run(["tc", "-n", netns, "-j", "qdisc", "show", "dev", dev], capture_output=True,
                             text=True, check=True).stdout
        [tbf] = [q for q in json.loads(out) if q["kind"] == "tbf"]
        assert tbf["options"]["rate"] == 200_000_000 // 8, tbf


def test_down_removes_a_lab_whose_owner_died_and_nothing_else(lab: netlab.Lab) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    crashed = netlab.create(1, owner=dead.pid)
    sleeper = crashed.popen(crashed.hosts[0], ["sleep", "600"])
    assert netlab.main(["down"]) == 0
    assert sleeper.wait(timeout=30) == -9
    left = netlab.labs()
    assert crashed.name not in left and lab.name in left  # the live lab stays
    assert not [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                          check=True).stdout.split() if n.startswith(crashed.name)]
