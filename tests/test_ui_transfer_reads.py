"""The page's re-reads of a transfer's record (GET /api/transfers/{id}, every ~2 s) against its live events.

A read that left before an event and lands after it carries the older state: it must not undo the event
(a failed destination shown "running" again, for good once the transfer ends). A read of a newer record
still updates the page, and the page keeps reading until the record itself says the transfer ended.

The race is made deterministic by holding the page's reads in the browser (Playwright routing) while the
event is published, then letting them reach the real gateway, which still serves the older record.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import expect

from castray.shared import bus as busmod
from castray.shared import codec
from castray.shared.events import TransferCompleted, TransferFailed, TransferStarted
from castray.shared.transfers import Destination, TransferRecord
from tests.support.feed import make_cluster, make_node
from tests.support.ui_harness import DEADLINE_MS, PageWatch, ViewStack

pytest_plugins = ("tests.support.browser",)
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def stack(view_stack: ViewStack) -> ViewStack:
    return view_stack  # the page's gateway and registry (`ui_harness.view_stack`)


class HeldReads:
    """The page's reads of one record, held in the browser until `release` (then let through)."""

    def __init__(self, page: Any, transfer_id: str) -> None:
        self.page, self.held, self.holding = page, list[Any](), True
        page.route(f"**/api/transfers/{transfer_id}", self._on_route)

    def _on_route(self, route: Any) -> None:
        if self.holding:
            self.held.append(route)
        else:
            route.continue_()

    def wait_for_one(self) -> None:
        deadline = time.monotonic() + DEADLINE_MS / 1000
        while not self.held:
            assert time.monotonic() < deadline, "the page never re-read the transfer's record"
            self.page.wait_for_timeout(100)  # lets Playwright dispatch the route callback

    def release(self) -> None:
        self.holding = False
        for route in self.held:
            route.continue_()
        self.held.clear()


def write_record(stack: ViewStack, record: TransferRecord) -> None:
    feed = stack.feed
    assert feed is not None

    async def put() -> None:
        r, n = feed.redis, feed.names
        await r.set(n.transfer(record.id), codec.encode(record))
        await r.zadd(n.transfer_index, {record.id: record.created_at})

    stack.do(put())


def test_a_record_read_older_than_an_event_never_undoes_it_and_a_newer_one_updates_the_page(
        stack: ViewStack, page_watch: tuple[Any, PageWatch]) -> None:
    page, watch = page_watch
    feed = stack.feed
    assert feed is not None
    stack.do(feed.cluster_found(make_cluster(1, found_by="local", name="lab")))
    for i in range(2):
        stack.do(feed.node_upsert(make_node("c1", i)))
    page.goto(f"{stack.url}/ui")
    expect(page.get_by_test_id("conn-badge")).to_have_attribute("data-state", "live")

    tid, total, digest = "cd" * 16, 64 * 1024**2, "a7" * 32
    ok, bad = "c1-n0000", "c1-n0001"
    running = TransferRecord(id=tid, state="running", mode="multicast", source={"generate": {"size": "64MB"}},
                             file_name="data.bin", bytes_total=total, created_at=time.time(),
                             destinations=[Destination(node_id=ok, state="running"),
                                           Destination(node_id=bad, state="running")])
    write_record(stack, running)
    reads = HeldReads(page, tid)
    bus = busmod.Bus(feed.redis, feed.names, source="transfer@test")
    channel = feed.names.transfer_events
    stack.do(bus.publish(channel, TransferStarted(transfer_id=tid, mode="multicast", bytes_total=total,
                                                  targets=[ok, bad], file_name="data.bin")))
    card = page.locator(f'[data-testid="transfer-card"][data-id="{tid}"]')
    ok_row = card.locator(f'[data-testid="transfer-dest"][data-node="{ok}"]')
    bad_row = card.locator(f'[data-testid="transfer-dest"][data-node="{bad}"]')
    expect(bad_row).to_have_attribute("data-state", "pending")  # the started event's; the reads are held

    # A read leaves before the failure; the record it will find still says running (with progress on
    # the other copy, so that the page shows when that read has landed).
    reads.wait_for_one()
    write_record(stack, running.model_copy(update={"destinations": [
        Destination(node_id=ok, state="running", bytes_done=total * 3 // 4),
        Destination(node_id=bad, state="running")]}))
    stack.do(bus.publish(channel, TransferFailed(transfer_id=tid, node_id=bad, error="node c1-n0001 died")))
    expect(bad_row).to_have_attribute("data-state", "failed")
    reads.release()
    expect(ok_row.get_by_test_id("dest-percent")).to_have_text("75 %")  # the older record has landed
    assert bad_row.get_attribute("data-state") == "failed"
    expect(bad_row).to_contain_text("node c1-n0001 died")

    # A newer record updates the page with no event at all.
    newer = running.model_copy(update={"destinations": [
        Destination(node_id=ok, state="completed", bytes_done=total, path=f"/inbox/{ok}/data.bin",
                    sha256=digest),
        Destination(node_id=bad, state="failed", error="node c1-n0001 died")]})
    write_record(stack, newer)
    expect(ok_row).to_have_attribute("data-state", "completed")
    expect(ok_row.get_by_test_id("dest-sha256")).to_have_attribute("data-sha256", digest)

    # The transfer's own end arrives before its record says so: the page keeps its end, and keeps reading
    # until the record says it ended (the transfer's checksum and error are only in the record).
    stack.do(bus.publish(channel, TransferCompleted(transfer_id=tid, bytes_total=total)))
    expect(card.get_by_test_id("transfer-state")).to_have_text("completed")
    write_record(stack, newer.model_copy(update={"state": "completed", "sha256": digest,
                                                 "error": f"{bad}: node c1-n0001 died"}))
    expect(card.get_by_test_id("transfer-sha256")).to_have_text(f"sha256 {digest}")
    expect(card.get_by_test_id("transfer-error")).to_have_text(f"{bad}: node c1-n0001 died")
    expect(card.get_by_test_id("transfer-state")).to_have_text("completed")
    expect(bad_row).to_have_attribute("data-state", "failed")
    assert watch.errors_except() == []
