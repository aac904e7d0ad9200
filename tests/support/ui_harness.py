"""Shared pieces of the web page's browser tests (no tests here).

- `LoopThread`: an asyncio loop in a thread, so that the gateway (and the registry) run beside the
  synchronous Playwright API in the test's own thread.
- `ViewStack`: the real gateway app and the real node-registry worker on one loop, fed by the registry's
  discovery-shaped `DiscoveryFeed` (the same Redis writes and events discovery makes).
- `launch_browser` / `PageWatch`: Debian's Chromium, never a downloaded one; every console error, page
  error, dialog and request outside the gateway is recorded for the assertions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from playwright.sync_api import expect

from castray.gateway.app import create_app
from castray.gateway.settings import GatewaySettings
from castray.local_ray import free_port
from castray.node_registry.settings import RegistrySettings
from castray.node_registry.worker import RegistryWorker
from castray.shared import bus as busmod
from tests.support.feed import DiscoveryFeed

T = TypeVar("T")
log = logging.getLogger(__name__)
CHROMIUM = os.environ.get("CASTRAY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-default-apps", "--disable-extensions", "--metrics-recording-only"]
DEADLINE_MS = 15_000
# Generous waits for every page assertion: the machine running the tests is small and busy.
expect.set_options(timeout=DEADLINE_MS)


class LoopThread:
    """An event loop running in a daemon thread; `run` executes a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ui-test-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class ViewStack:
    """Gateway + registry + a discovery-shaped feed, in one namespace, on a `LoopThread`."""

    namespace: str
    redis_url: str
    data_dir: Path
    api_token: str | None = None
    gateway_overrides: dict[str, Any] = field(default_factory=dict)  # more GatewaySettings
    loop: LoopThread = field(default_factory=LoopThread)
    port: int = 0
    runner: web.AppRunner | None = None
    registry: RegistryWorker | None = None
    feed: DiscoveryFeed | None = None
    _registry_task: asyncio.Future[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ViewStack:
        self.loop.run(self._start())
        return self

    async def _start(self) -> None:
        self.port = free_port()
        await self._serve()
        registry_settings = RegistrySettings(namespace=self.namespace, redis_url=self.redis_url,
                                             check_interval=0.5)
        self.registry = RegistryWorker(settings=registry_settings)
        self._registry_task = asyncio.ensure_future(self.registry.run())
        await asyncio.wait_for(self.registry.ready.wait(), 20)
        self.feed = DiscoveryFeed(busmod.connect(self.redis_url), self.registry.names)

    async def _serve(self) -> None:
        settings = GatewaySettings(namespace=self.namespace, redis_url=self.redis_url, host="127.0.0.1",
                                   port=self.port, data_dir=self.data_dir, api_token=self.api_token,
                                   **self.gateway_overrides)
        self.runner = web.AppRunner(create_app(settings), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def stop_gateway(self) -> None:
        """Stop the gateway (its WebSockets close with 1001); `start_gateway` brings it back on its port."""
        assert self.runner is not None
        self.loop.run(self.runner.cleanup())
        self.runner = None

    def start_gateway(self) -> None:
        self.loop.run(self._serve())

    def stop(self) -> None:
        try:
            self.loop.run(self._stop())
        finally:
            self.loop.stop()

    async def _stop(self) -> None:
        # Each step is bounded: a component that hangs on close must not hang the test run.
        steps: list[Coroutine[Any, Any, Any]] = []
        if self.registry is not None:
            steps.append(self.registry.close())
        if self._registry_task is not None:
            self._registry_task.cancel()
            steps.append(asyncio.gather(self._registry_task, return_exceptions=True))
        if self.feed is not None:
            steps.append(self.feed.redis.aclose())
        if self.runner is not None:
            steps.append(self.runner.cleanup())
        for step in steps:
            try:
                await asyncio.wait_for(step, 10)
            except TimeoutError:
                log.warning("ui test stack: a component took over 10 s to close; going on")

    def do(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a feed call (or any coroutine) on the stack's loop."""
        return self.loop.run(coro)


def launch_browser(playwright: Any) -> Any:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


@dataclass
class PageWatch:
    """Everything a page did that a test may want to fail on."""

    base: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    websockets: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        gateway = urlsplit(self.base).netloc

        def on_console(msg: Any) -> None:
            if msg.type == "error":
                self.console_errors.append(msg.text)

        def on_request(req: Any) -> None:
            self.requests.append(req.url)
            parts = urlsplit(req.url)
            if parts.scheme not in ("data", "blob") and parts.netloc != gateway:
                self.outside.append(req.url)

        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        def on_websocket(ws: Any) -> None:
            self.websockets.append(ws.url)
            if urlsplit(ws.url).netloc != gateway:
                self.outside.append(ws.url)

        page.on("console", on_console)
        page.on("pageerror", lambda err: self.page_errors.append(str(err)))
        page.on("request", on_request)
        page.on("dialog", on_dialog)
        page.on("websocket", on_websocket)

    def errors_except(self, *allowed: str) -> list[str]:
        """Console and page errors, minus those containing one of ``allowed``."""
        return [e for e in self.console_errors + self.page_errors if not any(a in e for a in allowed)]


# --- fixtures (registered in conftest; page_watch needs tests.support.browser's browser) -------------


@pytest.fixture
def view_stack(namespace: str, redis_url: str) -> Iterator[ViewStack]:
    """The page's gateway and node registry on the test's namespace, stopped afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix="castray-ui-"))
    s = ViewStack(namespace=namespace, redis_url=redis_url, data_dir=data_dir)
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def page_watch(browser: Any, view_stack: ViewStack) -> Iterator[tuple[Any, PageWatch]]:
    """A page of its own on the stack's gateway, its console and requests watched (`PageWatch`)."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(DEADLINE_MS)
    watch = PageWatch(view_stack.url)
    watch.attach(page)
    yield page, watch
    context.close()
