"""The web page against `castray up` and a real Ray cluster, in headless Chromium.

One test walks the acceptance of the page: it loads clean, with no request outside the gateway; it shows
the head; a worker that joins appears without a reload; a file generated on the page and broadcast to
every node finishes with every bar at 100 % and the checksum shown; a worker named
``<img src=x onerror=alert(1)>`` renders as text; workers that stop show as dead; a bad address shows the
API's error. It also takes the screenshot the README shows (``docs/ui.png``, see ``SCREENSHOT_ENV``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from playwright.sync_api import expect, sync_playwright

from castray import local_ray
from castray.client import Client, GatewayError
from tests.support.ray_nodes import start_worker
from tests.support.ui_harness import PageWatch, free_port, launch_browser
from tests.support.up import get_json
from tests.support.waiting import wait_for_blocking

pytestmark = pytest.mark.timeout(420)
XSS = "<img src=x onerror=alert(1)>"
# `CASTRAY_UI_SCREENSHOT=docs/ui.png pytest tests/test_ui_live.py` refreshes the README's picture; by default
# the screenshot goes to the test's temp dir, so a test run never dirties the work tree.
SCREENSHOT_ENV = "CASTRAY_UI_SCREENSHOT"
LIVE_MS = 60_000  # services start on a busy 2-core machine


@dataclass
class Up:
    process: subprocess.Popen[bytes]
    port: int
    err_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")[-6000:]


@pytest.fixture
def castray_up(ray_head: local_ray.RayNode, namespace: str, redis_url: str, tmp_path: Path) -> Iterator[Up]:
    """`castray up --no-ray` that sees only the test's own Ray head (no scan of 8265-8269, no /tmp/ray)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASTRAY_") and k != "RAY_ADDRESS"}
    env.update({
        "CASTRAY_NAMESPACE": namespace,
        "CASTRAY_REDIS_URL": redis_url,
        "CASTRAY_DATA_DIR": str(tmp_path / "data"),
        "CASTRAY_INBOX_DIR": str(tmp_path / "inbox"),
        "CASTRAY_SCAN_HOSTS": "",
        "CASTRAY_DISCOVERY_ADDRESSES": ray_head.dashboard_url,
        "CASTRAY_RAY_TEMP_DIRS": ray_head.temp_dir,
        "RAY_TMPDIR": ray_head.temp_dir,
        "CASTRAY_LOG_LEVEL": "INFO",
    })
    port = free_port()
    err_path = tmp_path / "up.err"
    with open(tmp_path / "up.out", "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "castray.cli", "up", "--no-ray", "--port", str(port)],
                                env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    up = Up(proc, port, err_path)
    try:
        try:
            wait_for_blocking(lambda: any(
                n.get("ray_node_id") == ray_head.node_id and n.get("state") == "ALIVE"
                for n in get_json(f"{up.url}/api/status")["node_statuses"]), "castray up to serve the head")
        except AssertionError as e:
            raise AssertionError(f"{e}; castray up's stderr:\n{up.stderr()}") from None
        yield up
    finally:
        procs = [psutil.Process(proc.pid)]
        with contextlib.suppress(psutil.Error):
            procs += psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        _, alive = psutil.wait_procs(procs, timeout=15)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()


def test_the_page_with_castray_up_and_a_real_cluster(ray_head: local_ray.RayNode,
                                                     ray_workers: list[local_ray.RayNode],
                                                     castray_up: Up) -> None:
    up = castray_up
    with sync_playwright() as p:
        browser = launch_browser(p)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.set_default_timeout(LIVE_MS)
            watch = PageWatch(up.url)
            watch.attach(page)
            walk_the_page(page, watch, up, ray_head, ray_workers)
        finally:
            browser.close()


def _row_of(page: Any, node: local_ray.RayNode) -> Any:
    """The node table's row of a Ray node (row ids are <cluster id>-<first 12 hex of the Ray node id>)."""
    assert node.node_id is not None
    return page.locator(f'#nodes-body tr[data-id$="-{node.node_id[:12]}"]')


def walk_the_page(page: Any, watch: PageWatch, up: Up, head: local_ray.RayNode,
                  workers: list[local_ray.RayNode]) -> None:
    screenshot = Path(os.environ.get(SCREENSHOT_ENV) or up.err_path.with_name("ui.png"))
    page.goto(f"{up.url}/ui")
    expect(page.get_by_test_id("conn-badge")).to_have_attribute("data-state", "live")
    rows = page.locator("#nodes-body tr")
    head_row = rows.filter(has=page.locator('[data-col="head"]', has_text="head"))
    expect(head_row).to_have_count(1, timeout=LIVE_MS)
    expect(head_row).to_have_attribute("data-state", "ALIVE")
    expect(head_row.locator('[data-col="cpu"]')).to_have_text("2")
    page.evaluate("window.__sameDocument = true")

    workers.append(start_worker(head, num_cpus=1, node_name="worker-1"))
    # Rows are found by node id: a name filter is a substring match (a dead "worker-1a2b3c" of another
    # test on the shared head would match "worker-1" too).
    worker_row = _row_of(page, workers[-1])
    expect(worker_row.locator('[data-col="name"]')).to_have_text("worker-1", timeout=LIVE_MS)
    expect(worker_row).to_have_attribute("data-state", "ALIVE", timeout=LIVE_MS)

    broadcast_a_generated_file(page, up, expected_targets=2)
    page.wait_for_timeout(500)  # let the last highlight fade before the picture
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000

    workers.append(start_worker(head, num_cpus=1, node_name=XSS))
    hostile = _row_of(page, workers[-1])
    expect(hostile).to_have_attribute("data-state", "ALIVE", timeout=LIVE_MS)
    expect(hostile.locator('[data-col="name"]')).to_have_text(XSS)
    assert page.locator("#nodes-body img").count() == 0

    for worker in workers:
        worker.stop()
    # Ray itself takes a while to declare a stopped node dead; the page follows within a poll.
    expect(worker_row).to_have_attribute("data-state", "DEAD", timeout=120_000)
    expect(hostile).to_have_attribute("data-state", "DEAD", timeout=120_000)
    expect(page.get_by_test_id("activity-log")).to_contain_text("worker-1: ALIVE → DEAD")
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"

    page.get_by_test_id("connect-address").fill("127.0.0.1:1")
    page.get_by_test_id("btn-connect").click()
    message = page.get_by_test_id("cluster-message")
    expect(message).to_have_attribute("data-kind", "error")
    with Client(up.url, token="") as api, pytest.raises(GatewayError) as refused:
        api.connect("127.0.0.1:1")
    body = refused.value.body
    assert body["success"] is False and body["error"] and refused.value.message == body["error"]
    expect(message).to_contain_text(f"Could not connect to 127.0.0.1:1: {body['error']}")

    assert watch.dialogs == []
    assert watch.outside == [], f"requests outside the gateway: {watch.outside}"
    # Chromium logs the refused connect request itself; nothing else may reach the console.
    assert watch.errors_except("Failed to load resource: the server responded with a status of") == []


def broadcast_a_generated_file(page: Any, up: Up, *, expected_targets: int) -> None:
    page.get_by_test_id("gen-size").fill("8MB")
    page.get_by_test_id("gen-content").select_option("random")
    page.get_by_test_id("transfer-mode").select_option("broadcast")
    page.get_by_test_id("btn-transfer").click()
    card = page.get_by_test_id("transfer-card").first
    expect(card.get_by_test_id("transfer-state")).to_have_text("completed", timeout=120_000)
    dests = card.locator('[data-testid="transfer-dest"]')
    expect(dests).to_have_count(expected_targets)
    checksum = card.get_by_test_id("transfer-sha256")
    expect(checksum).to_have_text(re.compile(r"^sha256 [0-9a-f]{64}$"))
    digest = checksum.inner_text().split()[-1]
    for i in range(expected_targets):
        dest = dests.nth(i)
        expect(dest.get_by_test_id("dest-progress")).to_have_attribute("aria-valuenow", "100")
        expect(dest.get_by_test_id("dest-percent")).to_have_text("100 %")
    # The checksum on the page is the one of the bytes that landed on every node.
    record = get_json(f"{up.url}/api/transfers/{card.get_attribute('data-id')}")
    assert len(record["destinations"]) == expected_targets
    for d in record["destinations"]:
        assert hashlib.sha256(Path(d["path"]).read_bytes()).hexdigest() == digest
        expect(dest.get_by_test_id("dest-sha256")).to_have_attribute("data-sha256", digest)
        expect(dest.get_by_test_id("dest-sha256")).to_have_attribute("data-kind", "verified")
        expect(dest.get_by_test_id("dest-sha256")).to_contain_text(f"✓ sha256 verified · {digest[:16]}")


def test_cluster_buttons_with_castray_up(ray_head: local_ray.RayNode, castray_up: Up) -> None:
    """Disconnect one, discover now, connect by address, disconnect all: the view follows each."""
    up = castray_up
    with sync_playwright() as p:
        browser = launch_browser(p)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            watch = PageWatch(up.url)
            watch.attach(page)
            page.goto(f"{up.url}/ui")
            clusters = page.locator("#clusters-body tr")
            nodes = page.locator("#nodes-body tr")
            alive = page.locator('#nodes-body tr[data-state="ALIVE"]')  # Ray keeps listing dead workers
            expect(clusters).to_have_count(1, timeout=LIVE_MS)
            expect(alive).to_have_count(1, timeout=LIVE_MS)
            message = page.get_by_test_id("cluster-message")

            clusters.first.get_by_test_id("btn-disconnect").click()
            expect(clusters).to_have_count(0)
            expect(nodes).to_have_count(0)
            expect(message).to_have_text(re.compile(r"^Disconnected cluster "))

            page.get_by_test_id("btn-discover").click()
            expect(message).to_have_attribute("data-kind", "ok", timeout=LIVE_MS)
            expect(message).to_contain_text("Discovery finished: 1 cluster(s) found")
            expect(clusters).to_have_count(1)
            expect(alive).to_have_count(1)

            page.get_by_test_id("btn-disconnect-all").click()
            expect(page.get_by_test_id("btn-disconnect-all")).to_have_text("Click again to disconnect all")
            page.get_by_test_id("btn-disconnect-all").click()
            expect(clusters).to_have_count(0)
            expect(message).to_have_text("Disconnected all external clusters.")

            page.get_by_test_id("connect-address").fill(ray_head.dashboard_url)
            page.get_by_test_id("btn-connect").click()
            expect(message).to_have_attribute("data-kind", "ok", timeout=LIVE_MS)
            expect(message).to_contain_text("Connected to ")
            expect(clusters).to_have_count(1)
            expect(clusters.first.locator('[data-col="found"]')).not_to_have_text("local")
            expect(alive).to_have_count(1)
            expect(page.get_by_test_id("activity-log")).to_contain_text("disconnected")
            assert watch.dialogs == [] and watch.outside == []
            assert watch.errors_except() == []
        finally:
            browser.close()
