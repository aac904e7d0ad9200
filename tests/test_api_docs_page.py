"""/api/docs in headless Chromium (Debian's), against the real gateway and node-registry: Swagger UI,
served by the gateway itself, renders the spec with no request to any other host and no breach of the
page's Content-Security-Policy, lists every operation of /api/openapi.json, and runs calls from the page
("Try it out", "Execute") against the same gateway: with the token the page has when the gateway needs
one, and past the browser guard's Origin check for a POST."""

from __future__ import annotations

import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from castray.client import Client
from tests.support.feed import make_cluster, make_node
from tests.support.ui_harness import DEADLINE_MS, PageWatch, ViewStack

pytest_plugins = ("tests.support.browser",)
pytestmark = pytest.mark.timeout(180)
TOKEN = "docs-token/with+odd=chars-0123456789"
# Reported by the page when a script or style breaks the policy (a console error says so too).
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation",
    (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


def _stack(namespace: str, redis_url: str, token: str | None = None) -> ViewStack:
    s = ViewStack(namespace=namespace, redis_url=redis_url, api_token=token,
                  data_dir=Path(tempfile.mkdtemp(prefix="castray-docs-")))
    s.start()
    s.do(s.feed.cluster_found(make_cluster(1, found_by="local", name="lab")))
    s.do(s.feed.node_upsert(make_node("c1", 0)))
    return s


@pytest.fixture
def stack(namespace: str, redis_url: str) -> Iterator[ViewStack]:
    s = _stack(namespace, redis_url)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def token_stack(namespace: str, redis_url: str) -> Iterator[ViewStack]:
    s = _stack(namespace, redis_url, TOKEN)
    try:
        yield s
    finally:
        s.stop()


def _open(browser: Any, url: str) -> tuple[Any, Any, PageWatch]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(DEADLINE_MS)
    page.add_init_script(RECORD_CSP_VIOLATIONS)
    watch = PageWatch(url.split("/api/", 1)[0])
    watch.attach(page)
    page.goto(url)
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    return context, page, watch


def _spec(stack: ViewStack) -> dict[str, Any]:
    with Client(stack.url, token=stack.api_token or "", timeout=10) as api:
        return api.openapi()


def _operation(page: Any, tag: str, operation_id: str) -> Any:
    """Swagger UI's block for one operation (its id is ``operations-<tag>-<operationId>``), opened."""
    block = page.locator(f"#operations-{tag}-{operation_id}")
    block.locator(".opblock-summary-control").click()
    expect(block.locator(".opblock-body")).to_be_visible()
    return block


def _execute(block: Any) -> Any:
    """Try it out, then Execute; the live response's row."""
    block.locator("button.try-out__btn").click()
    block.locator("button.execute").click()
    row = block.locator(".live-responses-table tbody tr.response").first
    expect(row.locator(".response-col_status")).to_be_visible()
    return row


def test_docs_render_every_endpoint_from_the_gateway_alone(stack: ViewStack, browser: Any) -> None:
    context, page, watch = _open(browser, f"{stack.url}/api/docs")
    try:
        spec = _spec(stack)
        wanted = sorted((method.upper(), path) for path, ops in spec["paths"].items() for method in ops)
        expect(page.locator(".swagger-ui .opblock")).to_have_count(len(wanted))
        shown = page.locator(".swagger-ui .opblock").evaluate_all(
            """blocks => blocks.map(b => [b.querySelector('.opblock-summary-method').textContent.trim(),
                                        b.querySelector('.opblock-summary-path').dataset.path])""")
        assert sorted(tuple(x) for x in shown) == wanted
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("CastRay")
        assert watch.requests and watch.outside == []  # not a font, not a validator badge
        assert page.evaluate("window.__cspViolations") == []
        assert watch.errors_except() == [] and watch.dialogs == []
    finally:
        context.close()


def test_get_status_runs_from_the_page_and_shows_the_200(stack: ViewStack, browser: Any) -> None:
    context, page, watch = _open(browser, f"{stack.url}/api/docs")
    try:
        block = _operation(page, "status", "get_api_status")
        with page.expect_response(lambda r: urllib.parse.urlsplit(r.url).path == "/api/status") as answer:
            row = _execute(block)
        assert answer.value.status == 200
        expect(row.locator(".response-col_status")).to_have_text("200")
        expect(row.locator(".response-col_description")).to_contain_text('"total_nodes": 1')
        assert watch.outside == [] and page.evaluate("window.__cspViolations") == []
        assert watch.errors_except() == []
    finally:
        context.close()


def test_a_file_uploads_from_the_page_and_is_stored(stack: ViewStack, browser: Any, tmp_path: Path) -> None:
    """POST /api/upload's multipart body is a file picker; the upload passes the Origin check."""
    sample = tmp_path / "from-the-docs.txt"
    sample.write_bytes(b"sent from /api/docs\n" * 100)
    context, page, watch = _open(browser, f"{stack.url}/api/docs")
    try:
        block = _operation(page, "files", "post_api_upload")
        block.locator("button.try-out__btn").click()
        block.locator("input[type=file]").set_input_files(str(sample))
        with page.expect_response(lambda r: urllib.parse.urlsplit(r.url).path == "/api/upload") as answer:
            block.locator("button.execute").click()
        assert answer.value.status == 200, answer.value.text()
        upload_id = answer.value.json()["upload_id"]
        row = block.locator(".live-responses-table tbody tr.response").first
        expect(row.locator(".response-col_status")).to_have_text("200")
        expect(row.locator(".response-col_description")).to_contain_text(upload_id)
        with Client(stack.url, token=stack.api_token or "", timeout=10) as api:
            stored = api.download_upload(upload_id, tmp_path / "stored.bin")
        assert stored.read_bytes() == sample.read_bytes()
        assert watch.outside == [] and page.evaluate("window.__cspViolations") == []
        assert watch.errors_except() == []
    finally:
        context.close()


def test_a_gateway_with_a_token_is_called_with_the_pages_token(token_stack: ViewStack, browser: Any) -> None:
    """The token handed over as for /ui (``#token=``) loads the spec, authorizes Swagger UI's calls, and
    leaves the address; a POST from the page passes the Origin check (same origin) and is answered."""
    s = token_stack
    context, page, watch = _open(browser, f"{s.url}/api/docs#token={urllib.parse.quote(TOKEN, safe='')}")
    try:
        assert "token" not in page.url
        block = _operation(page, "status", "get_api_status")
        with page.expect_request(lambda r: urllib.parse.urlsplit(r.url).path == "/api/status") as sent:
            row = _execute(block)
        assert sent.value.all_headers().get("authorization") == f"Bearer {TOKEN}"
        expect(row.locator(".response-col_status")).to_have_text("200")
        post = _operation(page, "files", "post_api_file_generator_create")
        with page.expect_request(lambda r: r.url.endswith("/api/file-generator/create")) as made:
            row = _execute(post)
        assert made.value.all_headers().get("origin") == s.url  # what the browser guard checks
        expect(row.locator(".response-col_status")).to_have_text("200")
        assert not any("token" in url for url in watch.requests)  # never in a URL
        assert watch.outside == [] and page.evaluate("window.__cspViolations") == []
        assert watch.errors_except() == []
    finally:
        context.close()


def test_a_gateway_with_a_token_the_page_lacks_asks_for_it(token_stack: ViewStack, browser: Any) -> None:
    s = token_stack
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(DEADLINE_MS)
        watch = PageWatch(s.url)
        watch.attach(page)
        page.goto(f"{s.url}/api/docs")
        expect(page.locator("#token-form")).to_be_visible()
        page.locator("#token-input").fill(TOKEN)
        page.locator("#token-form button[type=submit]").click()
        expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
        expect(page.locator("#token-form")).to_be_hidden()
        assert page.evaluate("localStorage.getItem('castray.token')") == TOKEN  # /ui has it too
        assert watch.errors_except("status of 401") == []  # the spec's first fetch, before the token
    finally:
        context.close()
