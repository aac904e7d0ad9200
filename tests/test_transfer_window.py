"""The chunks a transfer keeps in flight fit what its slowest link delivers within Ray's pull timeout
(`castray.transfer.pacing.Window`, issue 15 item 4: slow links cause no duplicate sends). Deterministic: the
rule's arithmetic, and the measured rate under a clock the test moves."""

from __future__ import annotations

import pytest

from castray.transfer.pacing import PULL_SHARE, PULL_TIMEOUT_S, START_CHUNKS, Window, pull_window
from castray.transfer.protocol import GeneratedFile, Plan, PlanDestination

MiB = 1024 * 1024


def plan(rate_limit: int = 0, chunk_bytes: int = 16 * MiB) -> Plan:
    return Plan(id="w", token="t", input=GeneratedFile(path="/tmp/x", size=1), file_name="x",
                dests=[PlanDestination(node_id="n", dir="/tmp/d")], chunk_bytes=chunk_bytes,
                rate_limit=rate_limit)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("rate", "chunk", "window"), [
    (12.5e6, 16 * MiB, 3),  # 100mbit, 16 MiB chunks: 62.5 MB in half the timeout, 3 chunks
    (2e6, 16 * MiB, 1),  # 16mbit: not even one chunk fits; one at a time
    (50e6, 4 * MiB, 59),
])
def test_the_window_holds_what_the_link_delivers_within_half_the_pull_timeout(
        rate: float, chunk: int, window: int) -> None:
    assert pull_window(chunk, rate) == window
    assert window == 1 or window * chunk <= PULL_SHARE * rate * PULL_TIMEOUT_S


def test_a_rate_limit_sizes_the_window_from_the_start() -> None:
    assert Window(plan(rate_limit=2 * MiB, chunk_bytes=MiB), most=64).size() == 10
    assert Window(plan(rate_limit=100 * MiB, chunk_bytes=MiB), most=6).size() == 6  # never above most


def test_without_a_rate_the_window_starts_small_and_follows_the_measured_rate() -> None:
    clock = Clock()
    window = Window(plan(chunk_bytes=MiB), most=32, clock=clock)
    assert window.size() == START_CHUNKS
    window.settled(MiB)  # the first chunk out: the clock starts
    for _ in range(4):  # then one chunk every 0.5 s: 2 MiB/s, 10 MiB in half of 10 s
        clock.now += 0.5
        window.settled(MiB)
    assert window.size() == 10
    for _ in range(20):  # the link slows to a chunk every 2 s: the window shrinks with the average
        clock.now += 2.0
        window.settled(MiB)
    assert window.size() < 10


def test_a_measured_rate_below_the_rate_limit_wins() -> None:
    clock = Clock()
    window = Window(plan(rate_limit=8 * MiB, chunk_bytes=MiB), most=64, clock=clock)
    assert window.size() == 40
    window.settled(MiB)
    for _ in range(4):
        clock.now += 1.0  # 1 MiB/s measured
        window.settled(MiB)
    assert window.size() == 5


def test_a_chain_may_hold_what_each_of_its_hops_delivers_within_the_pull_timeout() -> None:
    clock = Clock()
    window = Window(plan(chunk_bytes=MiB), most=64, clock=clock, links=6)
    assert window.size() == 6 * START_CHUNKS  # two chunks a hop until a rate is known
    window.settled(MiB)
    for _ in range(4):  # 2 MiB/s out of the chain's end: 10 chunks a link within half of 10 s
        clock.now += 0.5
        window.settled(MiB)
    assert window.size() == 60
    assert Window(plan(rate_limit=2 * MiB, chunk_bytes=MiB), most=64, links=6).size() == 60
    assert Window(plan(rate_limit=2 * MiB, chunk_bytes=MiB), most=13, links=6).size() == 13
