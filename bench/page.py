"""The web page at 10,000 nodes (issue 16 item 5): Chromium's long tasks while nodes change live.

    python bench/page.py [--sizes 1000,10000] [--clusters 20] [--rate 100] [--seconds 20]

For each size, the view is filled through the real path (a discovery-like feed rewrites discovery's state
and publishes ``source-reset``; the real node registry copies it into the view), the real gateway serves
``/ui`` (both in this process, ``tests/support/ui_harness.ViewStack``, own namespace), and Debian's
Chromium (headless, 1440x900) opens the page. A ``PerformanceObserver`` for ``longtask`` entries (tasks of
the page's main thread over 50 ms), registered before the page's scripts, records every long task. The
phases, each timed on the page's own clock:

- ``load``: from navigation until the table counts every node (the snapshot parsed and drawn);
- ``idle``: 5 s with nothing changing (the baseline);
- ``changes``: ``--rate`` node changes a second through discovery's feed (a quarter flip the node's state
  between ALIVE and UNREACHABLE, which moves it in and out of the state filter and the counts; the rest
  change its CPUs, a visible cell), for ``--seconds``;
- ``changes + scroll``: the same, while the table is scrolled by a page every 100 ms, top to bottom;
- ``changes + filter``: the same, with the state filter on ALIVE and a text filter typed.

Then how long the page took, after the last change was written, to show the view's last version. Prints,
per size and phase, the long tasks' count, the longest and their total blocking time (the sum of each
task's time beyond 50 ms), and the node rows in the DOM. A long task is wall time: on a loaded machine a
task that needs 10 ms of CPU may take 60 ms while the renderer waits for a core. So each phase with changes
is also traced (Chrome's timeline categories), and the main thread's tasks are counted again by their own
thread CPU time, beside the share of the phase the main thread spent on the CPU. Prints figures; asserts
nothing. Stops everything it started, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/x.py` sees only bench/

from castray.shared.names import Names  # noqa: E402
from tests.support.feed import DiscoveryFeed  # noqa: E402
from tests.support.namespace import drop_namespace  # noqa: E402
from tests.support.ui_harness import ViewStack, launch_browser  # noqa: E402

STATES = ("ALIVE", "ALIVE", "ALIVE", "DEAD", "UNREACHABLE")
IDLE_S = 5.0
TRACE = ["devtools.timeline", "disabled-by-default-devtools.timeline"]  # RunTask is in the second
# Registered before the page's own scripts (Playwright's init script is not subject to the page's CSP).
OBSERVER = """
window.__longtasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longtasks.push([e.startTime, e.duration]);
}).observe({ type: "longtask", buffered: true });
"""
SCROLL_STEP = """() => { const w = document.querySelector('.nodes-wrap');
  w.scrollTop = w.scrollTop + w.clientHeight >= w.scrollHeight ? 0 : w.scrollTop + w.clientHeight; }"""


@dataclass
class Phase:
    name: str
    start: float
    end: float = 0.0
    rows: int = 0
    tasks: list[tuple[float, float]] = field(default_factory=list)  # traced: (wall ms, CPU ms) per task


def main_thread_tasks(trace: bytes) -> list[tuple[float, float]]:
    """Each task of the page's main thread in a Chrome trace: its wall time and its thread's CPU time."""
    events = json.loads(trace)
    events = events["traceEvents"] if isinstance(events, dict) else events
    mains = {(e["pid"], e["tid"]) for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"
             and e["args"].get("name") == "CrRendererMain"}
    by_thread: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for e in events:
        key = (e.get("pid"), e.get("tid"))
        if key in mains and e.get("name") == "RunTask" and e.get("ph") == "X":
            by_thread.setdefault(key, []).append((e["dur"] / 1000, e.get("tdur", e["dur"]) / 1000))
    return max(by_thread.values(), key=len, default=[])


@dataclass
class Changer:
    """Node changes at a steady rate, through discovery's feed, on the stack's loop."""

    feed: DiscoveryFeed
    rate: float
    rng: random.Random = field(default_factory=lambda: random.Random(16))
    running: bool = True
    sent: int = 0

    async def run(self) -> None:
        ids = [i for i, n in self.feed.nodes.items() if n.state != "DEAD"]
        start = time.monotonic()
        while self.running:
            node = self.feed.nodes[self.rng.choice(ids)]
            if self.sent % 4 == 0:
                update: dict[str, Any] = {"state": "UNREACHABLE" if node.state == "ALIVE" else "ALIVE"}
            else:
                update = {"resources": {**node.resources, "CPU": float(self.rng.randint(1, 64))}}
            await self.feed.node_upsert(node.model_copy(update=update))
            self.sent += 1
            await asyncio.sleep(max(0.0, start + self.sent / self.rate - time.monotonic()))


async def fill(stack: ViewStack, nodes: int, clusters: int) -> None:
    assert stack.feed is not None
    await stack.feed.fill(nodes, clusters, STATES)


async def view_version(redis: aioredis.Redis, names: Names) -> int:
    return int(await redis.hget(names.view_meta, "version") or 0)


def now(page: Any) -> float:
    return float(page.evaluate("performance.now()"))


def rows(page: Any) -> int:
    return int(page.evaluate("document.querySelectorAll('#nodes-body tr').length"))


@contextlib.contextmanager
def traced(page: Any, phases: list[Phase], name: str) -> Iterator[None]:
    """A phase, with a Chrome trace of it (what each main-thread task cost in CPU, beside its wall time)."""
    browser = page.context.browser
    browser.start_tracing(page=page, categories=TRACE)
    phase = Phase(name, now(page))
    phases.append(phase)
    try:
        yield
    finally:
        phase.end, phase.rows = now(page), rows(page)
        phase.tasks = main_thread_tasks(browser.stop_tracing())


def measure(page: Any, stack: ViewStack, size: int, args: argparse.Namespace) -> tuple[list[Phase], float]:
    """Every phase of one size; and the seconds the page took to show the last change."""
    phases = [Phase("load", 0.0)]
    page.goto(f"{stack.url}/ui")
    page.get_by_test_id("nodes-count").filter(has_text=f"{size} of {size}").wait_for(timeout=300_000)
    phases[-1].end, phases[-1].rows = now(page), rows(page)
    phases.append(Phase("idle", now(page)))
    page.wait_for_timeout(IDLE_S * 1000)
    phases[-1].end, phases[-1].rows = now(page), rows(page)
    assert stack.feed is not None
    changer = Changer(stack.feed, args.rate)
    running: Future[None] = asyncio.run_coroutine_threadsafe(changer.run(), stack.loop.loop)
    try:
        with traced(page, phases, "changes"):
            page.wait_for_timeout(args.seconds * 1000)
        with traced(page, phases, "changes + scroll"):
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                page.evaluate(SCROLL_STEP)
                page.wait_for_timeout(100)
        with traced(page, phases, "changes + filter"):
            page.evaluate("() => { document.querySelector('.nodes-wrap').scrollTop = 0; }")
            page.get_by_test_id("filter-state").select_option("ALIVE")
            page.get_by_test_id("filter-text").press_sequentially("node-1", delay=150)
            page.wait_for_timeout(args.seconds * 1000)
    finally:
        changer.running = False
        running.result(30)
    names = Names(stack.namespace)
    assert stack.feed is not None
    last = stack.do(view_version(stack.feed.redis, names))
    written = time.monotonic()
    page.wait_for_function(f"() => castray.store.version >= {last}", timeout=120_000)
    return phases, time.monotonic() - written


def report(size: int, phases: list[Phase], tasks: list[list[float]], lag: float, rate: float) -> list[str]:
    out = []
    for p in phases:
        mine = [d for start, d in tasks if p.start <= start < p.end]
        longest = f"{max(mine):.0f} ms" if mine else "none"
        blocking = sum(d - 50 for d in mine)
        what = p.name if p.name in ("load", "idle") else f"{p.name}, {rate:g}/s"
        cpu = "| | |"
        if p.tasks:
            busy = sum(c for _, c in p.tasks) / (p.end - p.start)
            cpu = (f"| {sum(c > 50 for _, c in p.tasks)}, longest {max(c for _, c in p.tasks):.0f} ms "
                   f"| {busy:.0%} |")
        out.append(f"| {size:,} | {what} | {(p.end - p.start) / 1000:.1f} s | {len(mine)} | {longest} "
                   f"| {blocking:.0f} ms | {p.rows:,} {cpu}")
    out.append(f"| {size:,} | last change shown after | {lag * 1000:.0f} ms | | | | | | |")
    return out


def run_size(browser: Any, size: int, args: argparse.Namespace, redis_url: str) -> list[str]:
    namespace = f"bench-page-{uuid.uuid4().hex[:8]}"
    stack = ViewStack(namespace=namespace, redis_url=redis_url,
                      data_dir=Path(tempfile.mkdtemp(prefix="castray-page-"))).start()
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        stack.loop.run(fill(stack, size, args.clusters), timeout=120)
        page = context.new_page()
        page.add_init_script(OBSERVER)
        phases, lag = measure(page, stack, size, args)
        tasks = page.evaluate("window.__longtasks")
        return report(size, phases, tasks, lag, args.rate)
    finally:
        context.close()
        stack.stop()
        drop_namespace(redis_url, namespace)


def main(args: argparse.Namespace) -> None:
    redis_url = os.environ.get("CASTRAY_REDIS_URL", "redis://127.0.0.1:6379/0")
    load_before = os.getloadavg()
    lines: list[str] = []
    with sync_playwright() as p:
        browser = launch_browser(p)
        try:
            for size in args.sizes:
                for line in run_size(browser, size, args, redis_url):
                    print(line, flush=True)
                    lines.append(line)
        finally:
            browser.close()
    load_after = os.getloadavg()
    print(f"\n{args.clusters} clusters; load average before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in load_after)}\n")
    print("| nodes | phase | lasted | long tasks (> 50 ms) | longest | blocking | node rows in the DOM "
          "| tasks over 50 ms of CPU | main thread's CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for line in lines:
        print(line)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 10_000])
    p.add_argument("--clusters", type=int, default=20)
    p.add_argument("--rate", type=float, default=100.0, help="node changes a second")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each phase with changes")
    return p.parse_args()


if __name__ == "__main__":
    main(parse())
