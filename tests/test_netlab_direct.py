"""A broadcast chain over direct connections between the node agents (``Plan.direct``,
`castray.transfer.direct`), across the hosts of a network lab (`tests.support.netlab`): a Ray head on h1
and a node on each of h2-h4, CastRay's transfer driver on h1 (`LabDriver`).

- a broadcast to the three other hosts over the direct chain (the driver's log says it ran, and that the
  Ray chain never took over): every copy verified (sha256 of the file on disk), h1 sent at most 1.25
  times the file, and h2 and h3 each forwarded a whole copy (interface counters: deterministic); then a
  file the driver reads itself (as an upload is), which takes the Ray chain (`direct.usable`), verified;
- the middle node killed mid-stream (its raylet, SIGKILL): it fails with a reason, leaves no temporary
  file, and the others complete through the Ray chain, which takes over from where each copy stands;
- the set-up failing: the middle host's listening port unreachable (inside its namespace only, the ports
  it binds next moved to a range of their own whose SYNs are dropped), so its upstream cannot connect: the
  driver says it has no direct chain, and the Ray chain carries every copy, verified, no temporary file;
- the middle node hung, not dead (its agent's worker SIGSTOPped mid-stream, resumed in teardown): it fails
  with "node did not answer in time", its temporary file is removed through another node of the same
  machine (the lab's hosts share its file system and hostname), and the others complete through the Ray
  chain. Short chunk deadlines (the plan's ``chunk_timeout``) keep these quick; nothing is timed.

Each test has a lab of its own (one kills a node). Needs root and iproute2. The wrong secret and the
plan's limits are tested on a hop alone (tests/test_transfer_direct_hop.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from castray.transfer.pacing import NOT_ANSWERED
from castray.transfer.protocol import (
    DriverEvent,
    LocalFile,
    Plan,
)
from tests.support import netlab
from tests.support import transfer_env as env
from tests.support.agents import agent_processes
from tests.support.lab_driver import DriverLab, MiB, broadcast_plan, driver_lab, outcomes

TOOK_OVER = "the Ray chain takes over"
NO_DIRECT = "no direct chain"
UNREACHABLE = (61001, 61100)  # above the machine's ephemeral ports, which the lab's Ray ports came from


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[DriverLab]:
    with driver_lab(tmp_path) as made:
        yield made


def broadcast(lab: DriverLab, tmp_path: Path, size: int, rate_limit: int = 0,
              chunk_timeout: float = 15.0) -> Plan:
    """A generated file on h1 to h2, h3, h4 (in that order) over the direct chain."""
    return broadcast_plan(lab, tmp_path, size, id="dc", rate_limit=rate_limit, direct=True,
                          chunk_timeout=chunk_timeout)


def unreachable_listeners(host: netlab.Host) -> None:
    """Every port ``host`` binds from now on (an ephemeral one: a hop's listener) taken from `UNREACHABLE`,
    whose incoming connections are dropped; inside ``host``'s namespace only. Ray's ports there, chosen
    before, stay reachable, and so do the replies to ``host``'s own connections (not SYNs)."""
    lo, hi = UNREACHABLE
    run = [*host.exec_prefix()]
    subprocess.run([*run, "sysctl", "-q", "-w", f"net.ipv4.ip_local_port_range={lo} {hi}"], check=True)
    subprocess.run([*run, "iptables", "-A", "INPUT", "-p", "tcp", "--syn", "--dport", f"{lo}:{hi}", "-j",
                    "DROP"], check=True)


def test_a_direct_broadcast_to_three_hosts_sends_each_byte_from_the_source_once(
        lab: DriverLab, tmp_path: Path) -> None:
    size = 64 * MiB + 3
    sent0 = {h.name: lab.lab.counters(h) for h in lab.lab.hosts}
    ended, dests = outcomes(lab.driver.run(broadcast(lab, tmp_path, size)))
    assert ended.state == "completed", ended
    for name in ("h2", "h3", "h4"):
        dest = dests[name]
        assert dest.state == "completed" and dest.path is not None, dest
        assert env.size_of(dest.path) == size
        assert env.sha256_file(dest.path) == dest.sha256 == ended.sha256
    sent = {h.name: lab.lab.counters(h)[0] - sent0[h.name][0] for h in lab.lab.hosts}
    assert sent["h1"] <= 1.25 * size, sent  # a star would send 3 copies
    assert sent["h2"] >= size and sent["h3"] >= size, sent  # h2 fed h3, h3 fed h4
    log = lab.driver.log.read_text()
    assert "direct chain h2,h3,h4" in log, log[-3000:]
    assert TOOK_OVER not in log and "no direct chain" not in log, log[-3000:]

    # A file the driver reads itself (an upload beside the service) takes the chain through Ray.
    upload = tmp_path / "up" / "upload.bin"
    upload.parent.mkdir()
    upload.write_bytes(os.urandom(8 * MiB + 5))
    plan = broadcast(lab, tmp_path / "again", 0).model_copy(update={
        "id": "dc2", "input": LocalFile(root=str(upload.parent), path=upload.name)})
    ended, dests = outcomes(lab.driver.run(plan))
    assert ended.state == "completed" and ended.sha256 == env.sha256_file(upload), ended
    for name in ("h2", "h3", "h4"):
        dest = dests[name]
        assert dest.state == "completed" and dest.path is not None, dest
        assert env.sha256_file(dest.path) == ended.sha256
    log = lab.driver.log.read_text()
    assert log.count("direct chain h2,h3,h4") == 1 and "transfer dc2: chain of 3" in log, log[-3000:]


def test_a_node_killed_mid_direct_chain_fails_and_the_others_complete_through_the_ray_chain(
        lab: DriverLab, tmp_path: Path) -> None:
    size = 96 * MiB
    h3 = lab.nodes[2]
    raylet = h3.raylet_pid()
    assert raylet is not None
    killed: list[int] = []

    def kill_h3_midway(event: DriverEvent) -> None:  # once h3 holds a quarter of the file
        if not killed and getattr(event, "dests", {}).get("h3", 0) >= size // 4:
            os.kill(raylet, signal.SIGKILL)
            killed.append(raylet)

    ended, dests = outcomes(lab.driver.run(broadcast(lab, tmp_path, size, rate_limit=12 * MiB),
                                           kill_h3_midway))
    assert killed, "the transfer ended before h3 was killed"
    assert dests["h3"].state == "failed" and dests["h3"].error, dests["h3"]
    assert not list((tmp_path / "inbox" / "h3").iterdir()), "a file left where the dead node wrote"
    for name in ("h2", "h4"):
        dest = dests[name]
        assert dest.state == "completed" and dest.path is not None, (dest, dests)
        assert env.sha256_file(dest.path) == dest.sha256 == ended.sha256
    assert ended.state == "completed", ended
    log = lab.driver.log.read_text()
    assert "direct chain h2,h3,h4" in log and TOOK_OVER in log, log[-3000:]


def test_a_direct_chain_that_cannot_be_set_up_falls_back_to_the_ray_chain(
        lab: DriverLab, tmp_path: Path) -> None:
    size = 32 * MiB + 7
    unreachable_listeners(lab.lab.host("h3"))  # h2 cannot reach h3's listener
    ended, dests = outcomes(lab.driver.run(broadcast(lab, tmp_path, size, chunk_timeout=3.0)))
    assert ended.state == "completed", ended
    for name in ("h2", "h3", "h4"):
        dest = dests[name]
        assert dest.state == "completed" and dest.path is not None, (dest, dests)
        assert env.size_of(dest.path) == size
        assert env.sha256_file(dest.path) == dest.sha256 == ended.sha256
    assert env.temp_files(tmp_path / "inbox") == []
    log = lab.driver.log.read_text()
    assert NO_DIRECT in log and "h2 could not reach the next hop" in log, log[-3000:]
    assert TOOK_OVER in log, log[-3000:]


def test_a_node_hung_mid_direct_chain_fails_unanswered_and_the_others_complete(
        lab: DriverLab, tmp_path: Path) -> None:
    size = 48 * MiB
    h3 = lab.nodes[2]
    stopped: list[psutil.Process] = []

    def hang_h3_midway(event: DriverEvent) -> None:  # once h3 holds a quarter of the file
        if not stopped and getattr(event, "dests", {}).get("h3", 0) >= size // 4:
            stopped.extend(agent_processes(h3))
            assert stopped, "no agent on h3"
            for proc in stopped:
                proc.send_signal(signal.SIGSTOP)

    try:
        ended, dests = outcomes(lab.driver.run(
            broadcast(lab, tmp_path, size, rate_limit=8 * MiB, chunk_timeout=4.0), hang_h3_midway))
        left = env.temp_files(tmp_path / "inbox")
    finally:
        for proc in stopped:
            proc.send_signal(signal.SIGCONT)
    assert stopped, "the transfer ended before h3 hung"
    assert dests["h3"].state == "failed" and NOT_ANSWERED in str(dests["h3"].error), dests["h3"]
    assert not env.exists(tmp_path / "inbox" / "h3" / "copy.bin")
    assert left == [], left  # the hung copy's temp file removed through another node of the machine
    for name in ("h2", "h4"):
        dest = dests[name]
        assert dest.state == "completed" and dest.path is not None, (dest, dests)
        assert env.sha256_file(dest.path) == dest.sha256 == ended.sha256
    assert ended.state == "completed", ended
    log = lab.driver.log.read_text()
    assert "direct chain h2,h3,h4" in log and "h3 silent" in log and TOOK_OVER in log, log[-3000:]
    assert "1 through another node of their host" in log, log[-3000:]
