"""The page's services panel in headless Chromium, against the real gateway and node-registry: each
replica's heartbeat from ``GET /api/services``, a stale one marked, and the transfer queue's depth."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from playwright.sync_api import expect

from castray.shared import codec
from castray.shared.heartbeat import ServiceBeat
from castray.shared.names import Names
from tests.support.ui_harness import DEADLINE_MS, PageWatch, ViewStack

pytest_plugins = ("tests.support.browser",)
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def stack(view_stack: ViewStack) -> ViewStack:
    return view_stack  # the page's gateway and registry (`ui_harness.view_stack`)


def test_the_services_panel_lists_each_replica_and_marks_a_stale_one(
        browser: Any, stack: ViewStack, namespace: str, redis_url: str) -> None:
    stuck = ServiceBeat(service="transfer", instance="transfer@elsewhere:42:abcdef", host="elsewhere", pid=42,
                        started=time.time() - 600, beat=time.time() - 60, interval=5.0, version="0")
    with redis.Redis.from_url(redis_url) as r:
        r.hset(Names(namespace).services, stuck.key, codec.encode(stuck))
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(DEADLINE_MS)
        watch = PageWatch(stack.url)
        watch.attach(page)
        page.goto(f"{stack.url}/ui")
        rows = page.get_by_test_id("service-row")
        for service in ("gateway", "node-registry"):
            row = rows.and_(page.locator(f'[data-service="{service}"]'))
            expect(row).to_have_attribute("data-stale", "false")
            expect(row.locator(".state-badge")).to_have_text("alive")
        stale = rows.and_(page.locator('[data-service="transfer"]'))
        expect(stale).to_have_attribute("data-stale", "true")
        expect(stale.locator(".state-badge")).to_have_text("stale")
        expect(stale).to_contain_text("elsewhere:42")
        expect(rows).to_have_count(3)
        expect(page.get_by_test_id("services-queue")).to_have_text("transfer queue: 0 queued, 0 pending")
        assert watch.outside == [], f"requests outside the gateway: {watch.outside}"
        assert watch.errors_except() == []
    finally:
        context.close()
