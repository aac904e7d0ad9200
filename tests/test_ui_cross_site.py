"""Issue 12's browser acceptance, in headless Chromium against the real gateway and node-registry.

An attacker's page on another local origin (``tests/support/attacker_site.py``: a second aiohttp server)
sends a ``text/plain`` fetch POST, form POSTs, multipart uploads and opens a WebSocket to the gateway:
every one is refused (403) and nothing is created, changed or sent, as Redis and the data directory show.
The same actions from ``/ui``, the gateway's own page, succeed. A token handed to the page in the URL's
fragment (as ``castray up`` prints it) is used for REST and for the WebSocket, never in a URL.
"""

from __future__ import annotations

import re
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from castray.client import Client
from castray.shared import bus as busmod
from tests.support import attacker_site, reverse_proxy
from tests.support.feed import make_cluster, make_node
from tests.support.ui_harness import DEADLINE_MS, PageWatch, ViewStack, free_port
from tests.support.waiting import wait_for_blocking

pytest_plugins = ("tests.support.browser",)
pytestmark = pytest.mark.timeout(180)
TOKEN = "ui-token/with+odd=chars-0123456789"
NODES = ["c1-n0000", "c1-n0001"]


def make_stack(namespace: str, redis_url: str, **kw: Any) -> ViewStack:
    s = ViewStack(namespace=namespace, redis_url=redis_url,
                  data_dir=Path(tempfile.mkdtemp(prefix="castray-ui-")), **kw)
    s.start()
    s.do(s.feed.cluster_found(make_cluster(1, found_by="local", name="lab")))
    for i in range(len(NODES)):
        s.do(s.feed.node_upsert(make_node("c1", i)))
    with Client(s.url, token=s.api_token or "") as api:
        wait_for_blocking(lambda: {n.id for n in api.nodes()} == set(NODES),  # once applied
                          "the view to hold the seeded nodes", deadline=DEADLINE_MS / 1000, interval=0.05,
                          ignoring=())
    return s


@pytest.fixture
def stack(namespace: str, redis_url: str) -> Iterator[ViewStack]:
    s = make_stack(namespace, redis_url)
    try:
        yield s
    finally:
        s.stop()


def gateway_state(stack: ViewStack) -> dict[str, Any]:
    """What an attack would change: generated files, uploads, messages, the transfer stream, the files."""
    redis = busmod.connect(stack.redis_url)
    names = stack.feed.names if stack.feed is not None else None
    assert names is not None

    async def stream_length() -> int:
        try:
            return int(await redis.xlen(names.transfer_requests))
        finally:
            await redis.aclose()

    with Client(stack.url, token=stack.api_token or "") as api:  # what the gateway's API itself says
        generated = sorted(f["file_name"] for f in api.generated_files()["files"])
        uploads = sorted(u.file_name for u in api.uploads().uploads)
        messages = sum(len(api.node_messages(n)) for n in NODES)
    return {
        "generated": generated, "uploads": uploads, "messages": messages,
        "transfer_requests": stack.do(stream_length()),
        "files": sorted(p.name for p in stack.data_dir.rglob("*") if p.is_file()),
    }


def test_another_origins_page_can_neither_change_nor_watch_anything(stack: ViewStack, browser: Any) -> None:
    before = gateway_state(stack)
    assert before == {"generated": [], "uploads": [], "messages": 0, "transfer_requests": 0, "files": []}
    port = free_port()
    runner = stack.do(attacker_site.serve(stack.url, port))
    try:
        # localhost:Q is another site than 127.0.0.1:P; 127.0.0.1:Q is the same site on another port.
        for evil in (f"http://localhost:{port}/", f"http://127.0.0.1:{port}/"):
            context = browser.new_context()
            page = context.new_page()
            page.set_default_timeout(DEADLINE_MS)
            answers: list[tuple[str, int]] = []
            page.on("response", lambda r, into=answers: into.append((r.url, r.status))
                    if r.url.startswith(stack.url) else None)
            page.goto(evil)
            page.wait_for_function("window.attack && window.attack.done")
            attack = page.evaluate("window.attack")
            deadline = time.monotonic() + DEADLINE_MS / 1000
            while len(answers) < 5 and time.monotonic() < deadline:  # the three forms load in frames
                page.wait_for_timeout(100)
            context.close()
            assert attack["wsOpened"] is False and attack["wsMessages"] == [], attack
            paths = sorted(url.removeprefix(stack.url) for url, _ in answers)
            assert paths == sorted(["/api/file-generator/create", "/api/upload", "/api/file-generator/"
                                    "create-preset", "/api/send", "/api/upload"]), answers
            assert {status for _, status in answers} == {403}, answers
    finally:
        stack.do(runner.cleanup())
    assert gateway_state(stack) == before


def test_the_same_actions_from_ui_succeed(stack: ViewStack, browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(DEADLINE_MS)
    watch = PageWatch(stack.url)
    watch.attach(page)
    try:
        page.goto(f"{stack.url}/ui")
        expect(page.get_by_test_id("conn-badge")).to_have_attribute("data-state", "live")
        statuses = page.evaluate("""async () => {
            const json = { "Content-Type": "application/json" };
            const created = await fetch("/api/file-generator/create", { method: "POST", headers: json,
                body: JSON.stringify({ size: "1KB", file_name: "mine.txt" }) });
            const form = new FormData();
            form.append("file", new File(["my bytes"], "mine-upload.txt"));
            const uploaded = await fetch("/api/upload", { method: "POST", body: form });
            const sent = await fetch("/api/send", { method: "POST", headers: json,
                body: JSON.stringify({ cast_type: "broadcast", content: "hello" }) });
            const first = await new Promise((resolve) => {
                const ws = new WebSocket(`ws://${location.host}/ws`, ["castray.v1"]);
                ws.onmessage = (ev) => { resolve(JSON.parse(ev.data).type); ws.close(); };
                ws.onclose = () => resolve("closed");
            });
            return [created.status, uploaded.status, sent.status, first];
        }""")
        assert statuses == [200, 200, 200, "snapshot"]
        # A plain HTML form upload from the page's own origin works too.
        page.evaluate("""() => {
            const f = document.createElement("form");
            Object.assign(f, { method: "POST", enctype: "multipart/form-data", action: "/api/upload" });
            const input = Object.assign(document.createElement("input"), { type: "file", name: "file" });
            const files = new DataTransfer();
            files.items.add(new File(["form bytes"], "mine-form.txt"));
            input.files = files.files;
            f.append(input);
            document.body.append(f);
        }""")
        with page.expect_navigation() as nav:
            page.evaluate("document.forms[document.forms.length - 1].submit()")
        assert nav.value is not None and nav.value.status == 200
    finally:
        context.close()
    state = gateway_state(stack)
    assert state["generated"] == ["mine.txt"]
    assert {"mine-form.txt", "mine-upload.txt"} <= set(state["uploads"])
    assert state["messages"] >= len(NODES)


def test_a_token_in_the_address_fragment_is_used_and_never_sent_in_a_url(namespace: str, redis_url: str,
                                                                         browser: Any) -> None:
    s = make_stack(namespace, redis_url, api_token=TOKEN)
    context = browser.new_context()
    try:
        page = context.new_page()
        watch = PageWatch(s.url)
        watch.attach(page)
        page.goto(f"{s.url}/ui#token={urllib.parse.quote(TOKEN, safe='')}")
        expect(page.get_by_test_id("conn-badge")).to_have_attribute("data-state", "live")
        expect(page.locator('#nodes-body tr[data-id="c1-n0000"]')).to_have_attribute("data-state", "ALIVE")
        expect(page.locator("#auth-bar")).to_be_hidden()
        assert "token" not in page.url  # taken out of the address bar and the history
        assert watch.websockets and not any("token" in u for u in watch.requests + watch.websockets)
        assert page.evaluate("localStorage.getItem('castray.token')") == TOKEN
        assert watch.errors_except() == []
    finally:
        context.close()
        s.stop()


def test_ui_works_behind_a_reverse_proxy_that_is_configured_in(namespace: str, redis_url: str,
                                                                browser: Any) -> None:
    """A proxy that rewrites Host (nginx's plain proxy_pass): the page's origin is the proxy's. Configured in
    CASTRAY_ALLOWED_ORIGINS, the page goes live and can change things; through another proxy it cannot."""
    configured, other = free_port(), free_port()
    s = make_stack(namespace, redis_url, gateway_overrides={"allowed_origins": f"http://localhost:{configured}"})
    proxies = [s.do(reverse_proxy.serve(s.url, port)) for port in (configured, other)]
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(DEADLINE_MS)
        create = """async () => (await fetch("/api/file-generator/create", { method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ size: "1KB", file_name: "via-proxy.txt" }) })).status"""
        page.goto(f"http://localhost:{configured}/ui")
        expect(page.get_by_test_id("conn-badge")).to_have_attribute("data-state", "live")
        expect(page.locator('#nodes-body tr[data-id="c1-n0000"]')).to_have_attribute("data-state", "ALIVE")
        assert page.evaluate(create) == 200
        page.goto(f"http://localhost:{other}/ui")
        badge = page.get_by_test_id("conn-badge")
        expect(badge).to_have_attribute("title", re.compile("closed"))  # a handshake was refused
        expect(badge).not_to_have_attribute("data-state", "live")
        assert page.evaluate(create) == 403
        assert gateway_state(s)["generated"] == ["via-proxy.txt"]
    finally:
        context.close()
        for runner in proxies:
            s.do(runner.cleanup())
        s.stop()
