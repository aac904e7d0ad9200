"""The web page at /ui in headless Chromium, against the real gateway and the real node-registry.

The view is fed the way discovery feeds it (`DiscoveryFeed`: discovery's Redis writes and events), the
registry turns that into the merged view and ``view-changed`` events, the gateway serves it over REST
and ``/ws``: everything between Redis and the browser is the real thing. The page with real Ray
clusters and real transfers is covered by ``test_ui_live.py``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from castray.client import Client, GatewayError
from castray.shared import bus as busmod
from castray.shared import codec
from castray.shared.events import TransferCompleted, TransferFailed, TransferProgress, TransferStarted
from castray.shared.transfers import Destination, NodeFileSource, TransferRecord, UploadSource
from tests.support.feed import make_cluster, make_node
from tests.support.ui_harness import PageWatch, ViewStack

pytest_plugins = ("tests.support.browser",)
pytestmark = pytest.mark.timeout(180)
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def stack(view_stack: ViewStack) -> ViewStack:
    return view_stack  # the page's gateway and registry (`ui_harness.view_stack`)


def open_ui(page: Any, stack: ViewStack) -> None:
    page.goto(f"{stack.url}/ui")
    expect(page.get_by_test_id("conn-badge")).to_have_attribute("data-state", "live")


def node_row(page: Any, node_id: str) -> Any:
    return page.locator(f'#nodes-body tr[data-id="{node_id}"]')


def seed_cluster(stack: ViewStack, workers: int = 0) -> None:
    stack.do(stack.feed.cluster_found(make_cluster(1, found_by="local", name="lab")))
    for i in range(workers + 1):
        stack.do(stack.feed.node_upsert(make_node("c1", i, resources={
            "CPU": 8.0, "memory": 16 * 1024**3, "object_store_memory": 2 * 1024**3})))


def api(stack: ViewStack) -> Client:
    """The stack's gateway through castray.client (use it in a ``with``)."""
    return Client(stack.url, token=stack.api_token or "")


def test_page_and_assets_are_served_by_the_gateway_with_a_strict_policy(stack: ViewStack) -> None:
    with urllib.request.urlopen(f"{stack.url}/ui", timeout=10) as r:
        html = r.read().decode()
        csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "default-src 'none'" in csp
    assets = re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', html)
    assert {"/ui/static/js/main.js", "/ui/static/css/app.css"} <= set(assets)
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html), "the page refers to another host"
    for path in assets:
        with urllib.request.urlopen(f"{stack.url}{path}", timeout=10) as r:
            assert r.status == 200 and r.read()
    with urllib.request.urlopen(f"{stack.url}/", timeout=10) as r:
        assert r.url.endswith("/ui")


def test_loads_clean_shows_head_and_follows_nodes_live(stack: ViewStack,
                                                       page_watch: tuple[Any, PageWatch]) -> None:
    page, watch = page_watch
    seed_cluster(stack)
    open_ui(page, stack)

    head = node_row(page, "c1-n0000")
    expect(head).to_have_attribute("data-state", "ALIVE")
    expect(head.locator('[data-col="head"]')).to_have_text("head")
    expect(head.locator('[data-col="name"]')).to_have_text("c1-node-0")
    expect(head.locator('[data-col="cpu"]')).to_have_text("8")
    expect(head.locator('[data-col="memory"]')).to_have_text("16.0 GiB")
    expect(head.locator('[data-col="object_store"]')).to_have_text("2.00 GiB")
    cluster = page.locator('#clusters-body tr[data-id="c1"]')
    expect(cluster.locator('[data-col="found"]')).to_have_text("local")
    expect(cluster.locator('[data-col="ray_version"]')).to_have_text("2.60.0")
    expect(cluster.locator('[data-col="nodes"]')).to_have_text("1 / 1")

    page.evaluate("window.__sameDocument = true")
    worker = make_node("c1", 1, name="worker-1", is_head=False)
    stack.do(stack.feed.node_upsert(worker))
    expect(node_row(page, "c1-n0001").locator('[data-col="name"]')).to_have_text("worker-1")
    expect(cluster.locator('[data-col="nodes"]')).to_have_text("2 / 2")
    page.evaluate("""() => { window.__flashed = [];
        new MutationObserver((records) => { for (const r of records) {
            if (/flash-[ab]/.test(r.target.className)) window.__flashed.push(r.target.dataset.id); } })
        .observe(document.getElementById('nodes-body'), { attributes: true, subtree: true,
                                                           attributeFilter: ['class'] }); }""")
    # A change nobody can see (memory up by one byte) updates the row without a highlight ...
    memory = worker.resources["memory"] + 1
    quiet = worker.model_copy(update={"resources": {**worker.resources, "memory": memory}})
    stack.do(stack.feed.node_upsert(quiet))
    page.wait_for_function(f"() => castray.store.nodes.get('c1-n0001').resources.memory === {memory}")
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    assert page.evaluate("window.__flashed") == []
    # ... a visible one is highlighted.
    expect(page.locator('#transfer-targets option[value="c1-n0001"]')).to_have_count(1)
    reason = "Expected termination: received SIGTERM"
    stack.do(stack.feed.node_upsert(quiet.model_copy(update={"state": "DEAD", "state_message": reason})))
    expect(node_row(page, "c1-n0001")).to_have_attribute("data-state", "DEAD")
    assert "c1-n0001" in page.evaluate("window.__flashed")
    expect(node_row(page, "c1-n0001").locator(".state-badge")).to_have_text("DEAD")
    expect(node_row(page, "c1-n0001").get_by_test_id("node-state-reason")).to_have_text(reason)
    # Listed with Ray's reason, but no longer counted, and never offered as a transfer target.
    expect(cluster.locator('[data-col="nodes"]')).to_have_text("1 / 1")
    expect(page.get_by_test_id("stat-nodes")).to_have_text("1")
    expect(page.locator('#transfer-targets option[value="c1-n0001"]')).to_have_count(0)
    expect(page.get_by_test_id("activity-log")).to_contain_text("worker-1: ALIVE → DEAD")
    expect(page.get_by_test_id("stat-alive")).to_have_text("1")
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"

    stack.do(stack.feed.node_removed("c1-n0001"))
    expect(node_row(page, "c1-n0001")).to_have_count(0)
    assert watch.outside == [], f"requests outside the gateway: {watch.outside}"
    assert watch.errors_except() == []
    assert any("/ws?" in u for u in watch.websockets)


def test_hostile_names_render_as_text(stack: ViewStack, page_watch: tuple[Any, PageWatch]) -> None:
    page, watch = page_watch
    stack.do(stack.feed.cluster_found(make_cluster(1, name="<b>bold</b>", ray_version="<i>2</i>")))
    stack.do(stack.feed.node_upsert(make_node("c1", 0, name=XSS, hostname="<script>alert(2)</script>")))
    open_ui(page, stack)
    expect(node_row(page, "c1-n0000").locator('[data-col="name"]')).to_have_text(XSS)
    # And the same through a live delta, not only through the snapshot.
    stack.do(stack.feed.node_upsert(make_node("c1", 1, name=f"{XSS}-2", ip="<svg onload=alert(3)>")))
    expect(node_row(page, "c1-n0001").locator('[data-col="name"]')).to_have_text(f"{XSS}-2")
    expect(node_row(page, "c1-n0001").locator('[data-col="ip"]')).to_have_text("<svg onload=alert(3)>")
    expect(page.locator('#clusters-body tr[data-id="c1"] .cluster-name')).to_have_text("<b>bold</b>")
    expect(page.get_by_test_id("activity-log")).to_contain_text(f"Node {XSS}-2")
    assert page.locator("main img, main svg, main script, main b, main i").count() == 0
    page.wait_for_timeout(300)  # give an injected onerror handler every chance to run
    assert watch.dialogs == []
    assert not [u for u in watch.requests if u.rstrip("/").endswith("/x")], "the img tag was parsed"
    assert watch.errors_except() == []


def test_connect_with_a_bad_address_shows_the_api_error(stack: ViewStack,
                                                        page_watch: tuple[Any, PageWatch]) -> None:
    page, watch = page_watch
    open_ui(page, stack)
    address = "not a cluster::address"
    with api(stack) as client, pytest.raises(GatewayError) as refused:
        client.connect(address)
    body = refused.value.body
    assert body["success"] is False and body["error"] and refused.value.message == body["error"]
    page.get_by_test_id("connect-address").fill(address)
    page.get_by_test_id("btn-connect").click()
    message = page.get_by_test_id("cluster-message")
    expect(message).to_be_visible()
    expect(message).to_have_attribute("data-kind", "error")
    expect(message).to_contain_text(body["error"])
    expect(message).to_contain_text(address)
    # The only console noise allowed is Chromium's own line about the failed request.
    assert watch.errors_except("Failed to load resource") == []


def test_reconnect_resumes_from_the_last_version(stack: ViewStack, page_watch: tuple[Any, PageWatch]) -> None:
    page, watch = page_watch
    seed_cluster(stack)
    open_ui(page, stack)
    expect(node_row(page, "c1-n0000")).to_have_count(1)
    epoch, version = page.evaluate("[castray.store.epoch, castray.store.version]")
    # Drop the socket and hold the reconnection while the view changes.
    page.evaluate("""() => { const l = castray.live; l._open = l.open;
        l.open = () => l.onState('reconnecting', 'held by the test'); l.socket.close(); }""")
    expect(page.get_by_test_id("conn-badge")).to_have_attribute("data-state", "reconnecting")
    stack.do(stack.feed.node_upsert(make_node("c1", 7, name="joined-while-away", is_head=False)))
    stack.do(stack.feed.node_upsert(make_node("c1", 0, state="DEAD")))
    page.evaluate("() => { const l = castray.live; l.open = l._open; l.open(); }")
    expect(page.get_by_test_id("conn-badge")).to_have_attribute("data-state", "live")
    expect(node_row(page, "c1-n0007").locator('[data-col="name"]')).to_have_text("joined-while-away")
    expect(node_row(page, "c1-n0000")).to_have_attribute("data-state", "DEAD")
    resumed = watch.websockets[-1]
    assert f"epoch={epoch}" in resumed and f"since={version}" in resumed
    assert page.evaluate("castray.store.version") >= version + 2
    expect(page.get_by_test_id("activity-log")).not_to_contain_text("Resynchronised")
    assert watch.errors_except() == []


def test_gateway_restart_shows_reconnecting_then_resumes(stack: ViewStack,
                                                         page_watch: tuple[Any, PageWatch]) -> None:
    page, watch = page_watch
    seed_cluster(stack)
    open_ui(page, stack)
    expect(node_row(page, "c1-n0000")).to_have_count(1)
    epoch, version = page.evaluate("[castray.store.epoch, castray.store.version]")
    page.evaluate("window.__sameDocument = true")
    stack.stop_gateway()
    expect(page.get_by_test_id("conn-badge")).to_have_attribute("data-state", "reconnecting")
    stack.do(stack.feed.node_upsert(make_node("c1", 3, name="joined-during-restart", is_head=False)))
    stack.start_gateway()
    expect(page.get_by_test_id("conn-badge")).to_have_attribute("data-state", "live")
    expect(node_row(page, "c1-n0003").locator('[data-col="name"]')).to_have_text("joined-during-restart")
    assert any(f"epoch={epoch}" in u and f"since={version}" in u for u in watch.websockets[1:])
    expect(page.get_by_test_id("activity-log")).to_contain_text("Live again")
    assert page.evaluate("window.__sameDocument") is True
    # While the gateway was down, Chromium logged the refused connections; nothing else.
    assert watch.errors_except("WebSocket connection to", "Failed to load resource") == []


def test_a_thousand_nodes_update_in_place_filter_and_sort(stack: ViewStack,
                                                           page_watch: tuple[Any, PageWatch]) -> None:
    page, watch = page_watch
    feed = stack.feed
    stack.do(feed.cluster_found(make_cluster(1, name="big")))

    async def many() -> None:
        for i in range(1000):
            await feed.node_upsert(make_node("c1", i), publish=False)
        await feed.reset()  # the registry resyncs from discovery's state: one view-reset

    stack.do(many())
    open_ui(page, stack)
    rows = page.locator("#nodes-body tr")
    expect(page.get_by_test_id("nodes-count")).to_have_text("1000 of 1000")
    # Only the rows in view are drawn (the table is a window: see test_ui_scale.py), in name order.
    expect(rows.first).to_have_attribute("data-id", "c1-n0000")
    assert 0 < rows.count() < 100
    page.evaluate("document.querySelectorAll('#nodes-body tr').forEach(tr => { tr.__key = tr.dataset.id; })")

    async def kill_some() -> None:
        for i in range(0, 1000, 10):
            await feed.node_upsert(make_node("c1", i, state="DEAD"))

    stack.do(kill_some())
    expect(page.locator('#filter-state option[value="DEAD"]')).to_have_text("Dead (100)")
    for i in (0, 10, 100):  # c1-node-0, -10, -100 are among the first rows by name
        expect(page.locator(f'#nodes-body tr[data-id="c1-n{i:04d}"]')).to_have_attribute("data-state", "DEAD")
    same = page.evaluate(
        "[...document.querySelectorAll('#nodes-body tr')].every(tr => tr.__key === tr.dataset.id)")
    assert same, "rows were rebuilt instead of updated in place"

    page.get_by_test_id("filter-state").select_option("DEAD")
    expect(page.get_by_test_id("nodes-count")).to_have_text("100 of 1000")
    expect(page.locator('#nodes-body tr:not([data-state="DEAD"])')).to_have_count(0)
    assert rows.count() > 0
    page.get_by_test_id("filter-text").fill("node-99")
    expect(rows).to_have_count(1)  # c1-node-990 is the only dead one matching
    page.get_by_test_id("filter-text").fill("")
    page.get_by_test_id("filter-state").select_option("")
    page.locator('#nodes-head th[data-sort="name"]').click()  # name is the default: now descending
    expect(rows.first.locator('[data-col="name"]')).to_have_text("c1-node-999")
    page.locator('#nodes-head th[data-sort="state"]:not(.col-dot)').click()
    expect(rows.first).to_have_attribute("data-state", "ALIVE")
    page.locator('#nodes-head th[data-sort="state"]:not(.col-dot)').click()
    expect(rows.first).to_have_attribute("data-state", "DEAD")
    assert watch.errors_except() == []


def write_record(stack: ViewStack, record: TransferRecord) -> None:
    async def put() -> None:
        r, n = stack.feed.redis, stack.feed.names
        await r.set(n.transfer(record.id), codec.encode(record))
        await r.zadd(n.transfer_index, {record.id: record.created_at})

    stack.do(put())


def test_transfer_progress_and_checksums_from_live_events(stack: ViewStack,
                                                          page_watch: tuple[Any, PageWatch]) -> None:
    """Transfer events as workers publish them (the transfer service itself is in test_ui_live)."""
    page, watch = page_watch
    seed_cluster(stack, workers=1)
    open_ui(page, stack)
    tid, total, digest = "ab" * 16, 64 * 1024**2, "e3" * 32
    targets = ["c1-n0000", "c1-n0001"]
    record = TransferRecord(id=tid, state="running", mode="broadcast", source={"generate": {"size": "64MB"}},
                            file_name="data.bin", bytes_total=total, created_at=time.time(),
                            destinations=[Destination(node_id=t, state="running") for t in targets]
                            + [Destination(node_id="c1-n0009", state="running")])
    write_record(stack, record)
    bus = busmod.Bus(stack.feed.redis, stack.feed.names, source="transfer@test")
    channel = stack.feed.names.transfer_events
    # The started event names every destination of the record, as the transfer worker's does.
    stack.do(bus.publish(channel, TransferStarted(transfer_id=tid, mode="broadcast", bytes_total=total,
                                                  targets=[*targets, "c1-n0009"], file_name="data.bin")))
    stack.do(bus.publish(channel, TransferProgress(transfer_id=tid, node_id=targets[0], bytes_done=total // 2,
                                                   bytes_total=total, rate=100 * 1024**2, eta=0.32)))
    card = page.locator(f'[data-testid="transfer-card"][data-id="{tid}"]')
    first = card.locator(f'[data-testid="transfer-dest"][data-node="{targets[0]}"]')
    expect(first.get_by_test_id("dest-percent")).to_have_text("50 %")
    expect(first).to_contain_text("100 MiB/s")
    expect(first).to_contain_text("ETA <1 s")
    # Whether from the event or the page's periodic re-read of the record: the same three destinations.
    expect(card.locator('[data-testid="transfer-dest"]')).to_have_count(3)
    # A destination that fails says why, in words, and its bar says so.
    third = "c1-n0009"
    stack.do(bus.publish(channel, TransferFailed(transfer_id=tid, node_id=third,
                                                 error="node c1-n0009 died: <b>disk full</b>")))
    failed = card.locator(f'[data-testid="transfer-dest"][data-node="{third}"]')
    expect(failed).to_have_attribute("data-state", "failed")
    expect(failed).to_contain_text("node c1-n0009 died: <b>disk full</b>")
    expect(page.get_by_test_id("activity-log")).to_contain_text("failed: node c1-n0009 died")

    done = record.model_copy(update={"state": "completed", "sha256": digest, "destinations": [
        Destination(node_id=t, state="completed", bytes_done=total, path=f"/inbox/{t}/data.bin",
                    sha256=digest) for t in targets] + [
        Destination(node_id=third, state="failed", error="node c1-n0009 died: <b>disk full</b>")]})
    write_record(stack, done)
    for t in targets:
        done_event = TransferCompleted(transfer_id=tid, node_id=t, path=f"/inbox/{t}/data.bin",
                                       sha256=digest, bytes_total=total)
        stack.do(bus.publish(channel, done_event))
    stack.do(bus.publish(channel, TransferCompleted(transfer_id=tid, sha256=digest, bytes_total=total)))
    expect(card.get_by_test_id("transfer-state")).to_have_text("completed")
    for t in targets:
        dest = card.locator(f'[data-testid="transfer-dest"][data-node="{t}"]')
        expect(dest.get_by_test_id("dest-progress")).to_have_attribute("aria-valuenow", "100")
        expect(dest.get_by_test_id("dest-sha256")).to_have_attribute("data-sha256", digest)
        expect(dest.get_by_test_id("dest-sha256")).to_have_attribute("data-kind", "verified")
        expect(dest.get_by_test_id("dest-sha256")).to_contain_text(f"✓ sha256 verified · {digest[:16]}")
    expect(card.get_by_test_id("transfer-sha256")).to_have_text(f"sha256 {digest}")
    expect(card.get_by_test_id("btn-cancel")).to_be_hidden()
    expect(failed).to_have_attribute("data-state", "failed")
    assert watch.errors_except() == []


def test_start_a_transfer_from_the_form_and_cancel_it(stack: ViewStack,
                                                      page_watch: tuple[Any, PageWatch]) -> None:
    """The form builds the API's request; with no transfer worker running it stays queued until cancelled."""
    page, watch = page_watch
    seed_cluster(stack, workers=2)
    open_ui(page, stack)
    page.get_by_test_id("gen-size").fill("1MB")
    page.get_by_test_id("gen-content").select_option("text")
    page.get_by_test_id("transfer-mode").select_option("multicast")
    expect(page.locator("#transfer-targets option")).to_have_count(3)
    page.get_by_test_id("transfer-targets").select_option(["c1-n0001", "c1-n0002"])
    page.get_by_test_id("btn-transfer").click()
    card = page.get_by_test_id("transfer-card").first
    expect(card.get_by_test_id("transfer-state")).to_have_text("queued")
    tid = card.get_attribute("data-id")
    with api(stack) as client:
        record = client.transfer(tid or "")
    assert record.mode == "multicast"
    assert sorted(d.node_id for d in record.destinations) == ["c1-n0001", "c1-n0002"]
    expect(card.locator('[data-testid="transfer-dest"]')).to_have_count(2)
    card.get_by_test_id("btn-cancel").click()
    expect(card.get_by_test_id("transfer-state")).to_have_text("cancelled")
    with api(stack) as client:
        assert client.transfer(tid or "").state == "cancelled"

    # A file already on a node is a source too.
    page.locator("#src-node").check()
    page.get_by_test_id("src-node-id").select_option("c1-n0000")
    page.get_by_test_id("src-path").fill("datasets/part-0001.parquet")
    page.get_by_test_id("transfer-mode").select_option("unicast")
    page.get_by_test_id("transfer-targets").select_option("c1-n0002")
    page.get_by_test_id("btn-transfer").click()
    expect(page.get_by_test_id("transfer-card")).to_have_count(2)
    tid2 = page.get_by_test_id("transfer-card").first.get_attribute("data-id")
    with api(stack) as client:
        record = client.transfer(tid2 or "")
    assert record.mode == "unicast"
    assert record.source == NodeFileSource(node_id="c1-n0000", path="datasets/part-0001.parquet")
    assert [d.node_id for d in record.destinations] == ["c1-n0002"]

    # A unicast with no target chosen is refused on the page, before any request.
    page.get_by_test_id("transfer-mode").select_option("unicast")
    page.get_by_test_id("transfer-targets").select_option([])
    page.get_by_test_id("btn-transfer").click()
    expect(page.get_by_test_id("transfer-message")).to_have_text("choose a target node")
    assert watch.errors_except() == []


def unicast_from_the_form(page: Any, stack: ViewStack, target: str) -> TransferRecord:
    """Send the chosen source to ``target`` from the form; the queued transfer's record."""
    page.get_by_test_id("transfer-mode").select_option("unicast")
    page.get_by_test_id("transfer-targets").select_option(target)
    page.get_by_test_id("btn-transfer").click()
    card = page.get_by_test_id("transfer-card").first
    expect(card.get_by_test_id("transfer-state")).to_have_text("queued")
    with api(stack) as client:
        return client.transfer(card.get_attribute("data-id") or "")


def test_upload_with_progress_then_transfer_it(stack: ViewStack, page_watch: tuple[Any, PageWatch],
                                               tmp_path: Path) -> None:
    page, watch = page_watch
    seed_cluster(stack, workers=1)
    open_ui(page, stack)
    content = os.urandom(3 * 1024 * 1024 + 17)
    upload = tmp_path / "payload <b>.bin"
    upload.write_bytes(content)
    page.locator("#src-upload").check()
    page.get_by_test_id("upload-file").set_input_files(str(upload))
    status = page.get_by_test_id("upload-status")
    expect(status).to_contain_text(f"sha256 {hashlib.sha256(content).hexdigest()}")
    expect(page.get_by_test_id("upload-progress")).to_have_attribute("aria-valuenow", "100")
    expect(status).to_contain_text("payload <b>.bin")
    record = unicast_from_the_form(page, stack, "c1-n0001")
    assert record.mode == "unicast" and [d.node_id for d in record.destinations] == ["c1-n0001"]
    assert record.bytes_total == len(content)
    assert watch.errors_except() == []


def test_a_stored_upload_is_picked_as_the_source_then_deleted(stack: ViewStack,
                                                              page_watch: tuple[Any, PageWatch],
                                                              tmp_path: Path) -> None:
    page, watch = page_watch
    seed_cluster(stack, workers=1)
    open_ui(page, stack)
    upload = tmp_path / "stored <i>.bin"
    upload.write_bytes(os.urandom(100_000))
    page.locator("#src-upload").check()
    stored = page.get_by_test_id("stored-upload")
    expect(stored.locator("option")).to_have_count(1)  # only "the file chosen above"
    page.get_by_test_id("upload-file").set_input_files(str(upload))
    expect(stored.locator("option")).to_have_count(2)
    with api(stack) as client:
        [listed] = client.uploads().uploads
    expect(stored.locator("option").nth(1)).to_contain_text("stored <i>.bin")

    stored.select_option(listed.upload_id)
    record = unicast_from_the_form(page, stack, "c1-n0001")
    assert record.source == UploadSource(upload_id=listed.upload_id)

    stored.select_option(listed.upload_id)
    page.get_by_test_id("btn-delete-upload").click()
    expect(page.get_by_test_id("upload-status")).to_contain_text("Deleted stored <i>.bin")
    expect(stored.locator("option")).to_have_count(1)
    expect(page.get_by_test_id("btn-delete-upload")).to_be_disabled()
    with api(stack) as client:
        assert client.uploads().total == 0
    assert watch.errors_except() == []


def test_a_gateway_with_a_token_asks_for_it_then_goes_live(namespace: str, redis_url: str,
                                                           browser: Any) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="castray-ui-"))
    s = ViewStack(namespace=namespace, redis_url=redis_url, data_dir=data_dir,
                  api_token="s3cret-token/1234+5678")
    s.start()
    context = browser.new_context()
    try:
        seed_cluster(s)
        page = context.new_page()
        watch = PageWatch(s.url)
        watch.attach(page)
        page.goto(f"{s.url}/ui")
        expect(page.locator("#auth-bar")).to_be_visible()
        expect(page.get_by_test_id("conn-badge")).not_to_have_attribute("data-state", "live")
        page.locator("#auth-token").fill("s3cret-token/1234+5678")
        page.locator("#auth-form button[type=submit]").click()
        expect(page.get_by_test_id("conn-badge")).to_have_attribute("data-state", "live")
        expect(node_row(page, "c1-n0000")).to_have_attribute("data-state", "ALIVE")
        expect(page.locator("#auth-bar")).to_be_hidden()
        assert watch.websockets and not any("token" in u for u in watch.websockets)  # a subprotocol
        # Refused before the token: the requests (401) and the WebSocket handshake, nothing else.
        assert watch.errors_except("status of 401", "WebSocket connection to") == []
    finally:
        context.close()
        s.stop()


def test_filters_by_cluster_and_origin(stack: ViewStack, page_watch: tuple[Any, PageWatch]) -> None:
    page, watch = page_watch
    stack.do(stack.feed.cluster_found(make_cluster(1, found_by="local", name="here")))
    stack.do(stack.feed.cluster_found(make_cluster(2, name="there")))
    for i in range(3):
        stack.do(stack.feed.node_upsert(make_node("c1", i, external=False)))
    for i in range(2):
        stack.do(stack.feed.node_upsert(make_node("c2", i, external=True)))
    open_ui(page, stack)
    rows = page.locator("#nodes-body tr")
    expect(rows).to_have_count(5)
    expect(page.locator("#filter-cluster option")).to_have_count(3)
    page.get_by_test_id("filter-cluster").select_option("c2")
    expect(rows).to_have_count(2)
    expect(page.locator('#nodes-body tr[data-cluster="c2"]')).to_have_count(2)
    page.get_by_test_id("filter-cluster").select_option("")
    page.get_by_test_id("filter-external").select_option("local")
    expect(rows).to_have_count(3)
    expect(page.locator('#nodes-body [data-col="external"]', has_text="external")).to_have_count(0)
    # A node that joins while a filter is on shows only if it matches.
    stack.do(stack.feed.node_upsert(make_node("c2", 5, external=True)))
    stack.do(stack.feed.node_upsert(make_node("c1", 5, external=False)))
    expect(rows).to_have_count(4)
    page.get_by_test_id("filter-external").select_option("external")
    expect(rows).to_have_count(3)
    expect(page.locator('#clusters-body tr[data-id="c2"] [data-col="nodes"]')).to_have_text("3 / 3")
    assert watch.errors_except() == []
