"""The web page at 10,000 nodes (issue 16 item 5), in headless Chromium against the real gateway and the
real node registry, the view filled the way discovery fills it (its state rewritten, then ``source-reset``:
the registry copies it into the view in one resync).

The node table draws only the rows in view, between spacers as tall as the rows it leaves out; its
filters and counts are kept per delta. What is checked, never timed: the DOM holds a window of rows, the
last node can be scrolled to, every filter counts right over the whole view, and a delta updates its row
in place (or only the counts, for a node out of view). How fast the page stays is ``bench/page.py``'s.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from castray.shared.events import NodeInfo
from castray.shared.names import Names
from tests.support.feed import make_cluster, make_node
from tests.support.ui_harness import DEADLINE_MS, PageWatch, ViewStack

pytest_plugins = ("tests.support.browser",)
pytestmark = pytest.mark.timeout(300)
CLUSTERS = 20
PER_CLUSTER = 500
NODES = CLUSTERS * PER_CLUSTER
STATES = ("ALIVE", "ALIVE", "ALIVE", "DEAD", "UNREACHABLE")
# The window: the rows in view (about 20 at this size) and a margin each side; nowhere near 10,000.
MAX_DRAWN = 100
LOAD_MS = 120_000  # 10,000 nodes through the registry and the gateway on a busy 2-core machine


@pytest.fixture
def stack(namespace: str, redis_url: str) -> Iterator[ViewStack]:
    s = ViewStack(namespace=namespace, redis_url=redis_url,
                  data_dir=Path(tempfile.mkdtemp(prefix="castray-ui-scale-")))
    s.start()
    try:
        s.loop.run(fill(s), timeout=120)
        yield s
    finally:
        s.stop()


@pytest.fixture
def page(browser: Any, stack: ViewStack) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(DEADLINE_MS)
    watch = PageWatch(stack.url)
    watch.attach(page)
    page.goto(f"{stack.url}/ui")
    expect(page.get_by_test_id("nodes-count")).to_have_text(f"{NODES} of {NODES}", timeout=LOAD_MS)
    page.locator("#nodes-wrap").scroll_into_view_if_needed()  # below 20 clusters' rows
    yield page
    assert watch.errors_except() == []
    context.close()


async def fill(stack: ViewStack) -> None:
    """Discovery's state rewritten with 10,000 nodes over 20 clusters; wait until the view has them."""
    feed = stack.feed
    assert feed is not None
    feed.clusters = {c.id: c for c in (make_cluster(i) for i in range(CLUSTERS))}
    feed.nodes = {n.id: n for n in (make_node(f"c{c}", i, state=STATES[(c + i) % len(STATES)],
                                              external=c % 4 != 0, ip=f"10.{c}.{i // 256}.{i % 256}")
                                    for c in range(CLUSTERS) for i in range(PER_CLUSTER))}
    await feed.reset()
    names = Names(stack.namespace)
    async with asyncio.timeout(60):
        while await feed.redis.hlen(names.view_nodes) != NODES:  # noqa: ASYNC110 (Redis, not a local flag)
            await asyncio.sleep(0.05)


def nodes_of(stack: ViewStack) -> list[NodeInfo]:
    assert stack.feed is not None
    return list(stack.feed.nodes.values())


def by_name(nodes: list[NodeInfo]) -> list[str]:
    """The table's default order: by name, case aside, then by id."""
    return [n.id for n in sorted(nodes, key=lambda n: ((n.name or n.id).lower(), n.id))]


def drawn(page: Any) -> list[str]:
    return list(page.evaluate("[...document.querySelectorAll('#nodes-body tr')].map((tr) => tr.dataset.id)"))


def row(page: Any, node_id: str) -> Any:
    return page.locator(f'#nodes-body tr[data-id="{node_id}"]')


def scroll_to(page: Any, where: str) -> None:
    page.locator("#nodes-wrap").evaluate(f"(w) => {{ w.scrollTop = {where}; }}")


def test_ten_thousand_nodes_draw_a_window_and_scroll_to_the_last(stack: ViewStack, page: Any) -> None:
    order = by_name(nodes_of(stack))
    expect(row(page, order[0])).to_be_in_viewport()
    first = drawn(page)
    assert 0 < len(first) <= MAX_DRAWN and first == order[:len(first)]
    height = page.locator("#nodes-wrap").evaluate("(w) => w.scrollHeight")
    assert height >= NODES * 30, "the spacers do not keep the height of every row"

    scroll_to(page, "w.scrollHeight")
    last = row(page, order[-1])
    expect(last).to_be_in_viewport()
    expect(last).to_have_attribute("aria-rowindex", str(NODES + 1))  # the header is row 1
    expect(last.locator('[data-col="name"]')).to_have_text("c9-node-99")  # names sort as text
    rows = drawn(page)
    assert 0 < len(rows) <= MAX_DRAWN and rows == order[-len(rows):]

    scroll_to(page, "w.scrollHeight / 2")
    expect(row(page, order[0])).to_have_count(0)
    expect(row(page, order[-1])).to_have_count(0)
    middle = drawn(page)
    assert 0 < len(middle) <= MAX_DRAWN
    at = order.index(middle[0])
    assert middle == order[at:at + len(middle)] and 0 < at < NODES - len(middle)


def test_each_filter_counts_right_over_ten_thousand_nodes(stack: ViewStack, page: Any) -> None:
    nodes = nodes_of(stack)
    states = Counter(n.state for n in nodes)
    expect(page.locator('#filter-state option[value="DEAD"]')).to_have_text(f"Dead ({states['DEAD']})")
    expect(page.locator('#filter-state option[value="UNREACHABLE"]')).to_have_text(
        f"Unreachable ({states['UNREACHABLE']})")
    expect(page.locator('#filter-cluster option[value="c7"]')).to_have_text(f"cluster-7 ({PER_CLUSTER})")
    external = sum(n.external for n in nodes)
    expect(page.locator('#filter-external option[value="external"]')).to_have_text(
        f"External only ({external})")

    def shows(wanted: list[NodeInfo]) -> None:
        expect(page.get_by_test_id("nodes-count")).to_have_text(f"{len(wanted)} of {NODES}")
        rows = drawn(page)
        assert rows == by_name(wanted)[:len(rows)] and len(rows) <= MAX_DRAWN
        assert len(rows) == len(wanted) if len(wanted) < 20 else len(rows) >= 20  # a view's worth at least

    page.get_by_test_id("filter-state").select_option("DEAD")
    shows([n for n in nodes if n.state == "DEAD"])
    page.get_by_test_id("filter-cluster").select_option("c7")
    shows([n for n in nodes if n.state == "DEAD" and n.cluster_id == "c7"])
    page.get_by_test_id("filter-state").select_option("")
    page.get_by_test_id("filter-external").select_option("local")
    shows([])  # c7 is an external cluster
    expect(page.locator("#nodes-empty")).to_be_visible()
    page.get_by_test_id("filter-cluster").select_option("c8")
    shows([n for n in nodes if n.cluster_id == "c8"])
    page.get_by_test_id("filter-cluster").select_option("")
    shows([n for n in nodes if not n.external])
    page.get_by_test_id("filter-external").select_option("")
    page.get_by_test_id("filter-text").fill("NODE-49")  # name, ip, id or host name; case aside
    shows([n for n in nodes if "node-49" in f"{n.name} {n.ip} {n.id} {n.hostname}".lower()])
    page.get_by_test_id("filter-text").fill("10.3.1.")
    shows([n for n in nodes if n.ip.startswith("10.3.1.")])
    page.get_by_test_id("filter-text").fill("")
    shows(nodes)


def test_a_delta_updates_its_row_in_place_and_the_counts(stack: ViewStack, page: Any) -> None:
    feed = stack.feed
    assert feed is not None
    nodes = nodes_of(stack)
    order = by_name(nodes)
    alive = sum(n.state == "ALIVE" for n in nodes)
    unreachable = sum(n.state == "UNREACHABLE" for n in nodes)
    top = feed.nodes[next(i for i in order if feed.nodes[i].state == "ALIVE")]
    expect(row(page, top.id)).to_be_in_viewport()
    page.evaluate(f"document.querySelector('#nodes-body tr[data-id=\"{top.id}\"]').__key = 'same'")

    changed = top.model_copy(update={"state": "UNREACHABLE", "resources": {**top.resources, "CPU": 48.0}})
    stack.do(feed.node_upsert(changed))
    expect(row(page, top.id)).to_have_attribute("data-state", "UNREACHABLE")
    expect(row(page, top.id).locator('[data-col="cpu"]')).to_have_text("48")
    assert page.evaluate(f"document.querySelector('#nodes-body tr[data-id=\"{top.id}\"]').__key") == "same"
    expect(page.locator('#filter-state option[value="UNREACHABLE"]')).to_have_text(
        f"Unreachable ({unreachable + 1})")
    expect(page.get_by_test_id("stat-alive")).to_have_text(str(alive - 1))

    # A node far out of view: only the counts change now; its row shows the change once scrolled to.
    far = feed.nodes[next(i for i in reversed(order) if feed.nodes[i].state == "ALIVE")]
    before = drawn(page)
    stack.do(feed.node_upsert(far.model_copy(update={"state": "DEAD", "state_message": "gone"})))
    expect(page.locator('#filter-state option[value="ALIVE"]')).to_have_text(f"Alive ({alive - 2})")
    assert drawn(page) == before
    page.get_by_test_id("filter-state").select_option("DEAD")
    expect(page.get_by_test_id("nodes-count")).to_have_text(
        f"{sum(n.state == 'DEAD' for n in nodes) + 1} of {NODES}")
    page.get_by_test_id("filter-state").select_option("")
    scroll_to(page, "w.scrollHeight")
    expect(row(page, far.id)).to_have_attribute("data-state", "DEAD")
    expect(row(page, far.id).get_by_test_id("node-state-reason")).to_have_text("gone")

    # A node that joins takes its place in the order (the last, by name) and in the counts.
    joined = make_node("c19", 9999, name="zz-last")
    stack.do(feed.node_upsert(joined))
    expect(page.get_by_test_id("nodes-count")).to_have_text(f"{NODES + 1} of {NODES + 1}")
    scroll_to(page, "w.scrollHeight")
    expect(row(page, joined.id)).to_be_in_viewport()
    assert drawn(page)[-1] == joined.id
