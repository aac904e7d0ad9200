"""A broadcast that feeds itself, across hosts (issue 15 item 4): a Ray head on h1 of a network lab
(`tests.support.netlab`) and a node on each of h2-h4; CastRay's transfer driver on h1 (`LabDriver`) runs
plans as the transfer service would. The destinations form a chain (`castray.transfer.chain`): each feeds
the next, so the source's host sends each byte about once, whatever the number of destinations.

- a broadcast to the three other hosts: every copy verified (sha256 of the file on disk), and h1 sent at
  most 1.25 times the file (its interface's counter: deterministic, unlike a time);
- the middle node of the chain killed mid-broadcast (its raylet, SIGKILL): it fails with a reason, leaves
  no temporary file, and the nodes after it still complete from the copies upstream of it; only the copies
  behind it are rewound and re-fed (the driver's log says which), the one before it goes on untouched.

Each test has a lab of its own (a test kills a node). The head detects a dead node within a few seconds
(health checks every second), so the dead node's copies are known lost soon. Needs root and iproute2.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from castray.transfer.protocol import (
    DriverEvent,
    Plan,
)
from tests.support import transfer_env as env
from tests.support.lab_driver import DriverLab, MiB, broadcast_plan, driver_lab, outcomes


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[DriverLab]:
    with driver_lab(tmp_path) as made:
        yield made


def broadcast(lab: DriverLab, tmp_path: Path, size: int, rate_limit: int = 0) -> Plan:
    """A generated file on h1 to h2, h3, h4 (in that order), through the chain in Ray's stores."""
    return broadcast_plan(lab, tmp_path, size, rate_limit=rate_limit)


def test_a_broadcast_to_three_hosts_sends_each_byte_from_the_source_about_once(
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
    received = {h.name: lab.lab.counters(h)[1] - sent0[h.name][1] for h in lab.lab.hosts}
    assert sent["h1"] <= 1.25 * size, (sent, received)  # a star would send 3 copies
    assert all(received[h] >= size for h in ("h2", "h3", "h4")), received
    assert sent["h2"] >= size and sent["h3"] >= size, sent  # the chain: h2 fed h3, h3 fed h4


def test_a_chain_node_killed_mid_broadcast_fails_and_the_nodes_after_it_complete(
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

    plan = broadcast(lab, tmp_path, size, rate_limit=12 * MiB)
    ended, dests = outcomes(lab.driver.run(plan, kill_h3_midway))
    assert killed, "the transfer ended before h3 was killed"
    assert dests["h3"].state == "failed" and dests["h3"].error, dests["h3"]
    assert not list((tmp_path / "inbox" / "h3").iterdir()), "a file left where the dead node wrote"
    for name in ("h2", "h4"):
        dest = dests[name]
        assert dest.state == "completed" and dest.path is not None, (dest, dests)
        assert env.sha256_file(dest.path) == dest.sha256 == ended.sha256
    assert ended.state == "completed", ended
    rewound = [m.group(1).split(",") for m in re.finditer(r"rewinding (\S+)", lab.driver.log.read_text())]
    assert rewound and all("h2" not in nodes for nodes in rewound), rewound  # upstream of h3: untouched
    assert any("h4" in nodes for nodes in rewound), rewound
