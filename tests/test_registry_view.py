"""The node registry against the real Redis: events applied in order, duplicates, gaps, resets.

Discovery is played by `DiscoveryFeed`, which writes discovery's state and publishes in one MULTI, as
discovery's contract says; ``publish=False`` drops a message the way pub/sub can.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from castray.node_registry.scripts import Template
from castray.node_registry.view import MergedView, ViewChange, view_changed_template
from castray.shared import codec
from castray.shared.events import ViewChangedEvent, ViewResetEvent
from castray.shared.names import Names
from castray.shared.view import ViewReader
from tests.support.feed import DiscoveryFeed, make_cluster, make_node
from tests.support.registry import StartRegistry, changed_only, view_differs, wait_equal
from tests.support.waiting import wait_for

# --- the view store on its own (no worker): exact outcomes ----------------------------------------


async def test_first_resync_creates_an_empty_view_with_an_epoch(redis_client: aioredis.Redis,
                                                                 names: Names) -> None:
    view = MergedView(redis_client, names)
    first = await view.resync()
    again = await view.resync()
    assert (first.outcome, first.version, len(first.epoch)) == ("created", 1, 16)
    assert (again.outcome, again.version, again.epoch) == ("unchanged", 1, first.epoch)
    snap = await ViewReader(redis_client, names).snapshot()
    assert (snap.epoch, snap.version, snap.clusters, snap.nodes) == (first.epoch, 1, {}, {})
    [(entry_id, fields)] = await redis_client.xrange(names.view_log)
    reset = codec.decode(fields[b"data"])
    assert entry_id == b"1-0"
    assert isinstance(reset, ViewResetEvent)
    assert (reset.seq, reset.payload.epoch, reset.payload.version) == (1, first.epoch, 1)


async def test_duplicate_is_a_no_op_and_a_gap_is_refused(redis_client: aioredis.Redis, names: Names) -> None:
    view, feed = MergedView(redis_client, names), DiscoveryFeed(redis_client, names)
    await feed.reset()
    await view.resync()
    found = await feed.cluster_found(make_cluster(1))
    assert (await view.apply(found)).outcome == "applied"
    dup = await view.apply(found)
    assert (dup.outcome, dup.version) == ("duplicate", 2)
    await feed.node_upsert(make_node("c1", 0), publish=False)
    skipped_to = await feed.node_upsert(make_node("c1", 1))
    gap = await view.apply(skipped_to)
    assert (gap.outcome, gap.reason) == ("resync", "gap")
    snap = await ViewReader(redis_client, names).snapshot()
    assert (snap.version, snap.seq, list(snap.nodes)) == (2, found.seq, [])  # the gap wrote nothing
    assert await redis_client.xlen(names.view_log) == 2


async def test_an_event_from_an_unknown_source_is_refused(redis_client: aioredis.Redis, names: Names) -> None:
    view = MergedView(redis_client, names)
    await DiscoveryFeed(redis_client, names).reset()
    await view.resync()
    other = await DiscoveryFeed(redis_client, names).cluster_found(make_cluster(2))
    result = await view.apply(other)
    assert (result.outcome, result.reason) == ("resync", "new source")


# --- the worker ----------------------------------------------------------------------------------


async def test_events_are_applied_in_order_and_published(
    redis_client: aioredis.Redis, names: Names, start_registry: StartRegistry, view_events: list[Any]
) -> None:
    feed = DiscoveryFeed(redis_client, names)
    await feed.reset()
    worker = await start_registry()
    start = (await ViewReader(redis_client, names).snapshot()).version
    await feed.cluster_found(make_cluster(1))
    for i in range(3):
        await feed.node_upsert(make_node("c1", i))
    await feed.node_upsert(make_node("c1", 1, state="DEAD"))
    await feed.node_removed("c1-n0002")
    cluster = make_cluster(1, state="lost")
    await feed.cluster_lost(cluster)

    assert await wait_equal(redis_client, names) == []
    assert await wait_for(lambda: len(changed_only(view_events)) >= 7)
    view_events = changed_only(view_events)
    changes = [(e.payload.kind, e.payload.change, e.payload.id) for e in view_events]
    assert changes == [("cluster", "found", "c1"), ("node", "added", "c1-n0000"),
                       ("node", "added", "c1-n0001"), ("node", "added", "c1-n0002"),
                       ("node", "updated", "c1-n0001"),
                       ("node", "removed", "c1-n0002"), ("cluster", "lost", "c1")]
    assert [e.payload.version for e in view_events] == list(range(start + 1, start + 8))
    assert all(e.seq == e.payload.version for e in view_events)
    updated, removed = view_events[4].payload, view_events[5].payload
    assert updated.record is not None and updated.record.state == "DEAD"
    assert updated.changed["state"].old == "ALIVE" and updated.changed["state"].new == "DEAD"
    assert removed.record is None
    log = await redis_client.xrange(names.view_log, min=f"{start + 1}-0")
    assert [codec.decode(f[b"data"]) for _, f in log] == view_events
    assert [eid for eid, _ in log] == [f"{v}-0".encode() for v in range(start + 1, start + 8)]
    assert worker.applied == 7


async def test_a_redelivered_event_changes_nothing(
    redis_client: aioredis.Redis, names: Names, start_registry: StartRegistry, view_events: list[Any]
) -> None:
    feed = DiscoveryFeed(redis_client, names)
    await feed.reset()
    await start_registry()
    found = await feed.cluster_found(make_cluster(1))
    await redis_client.publish(names.discovery_events, codec.encode(found))  # delivered twice
    await feed.node_upsert(make_node("c1", 0))
    assert await wait_equal(redis_client, names) == []
    assert await wait_for(lambda: len(changed_only(view_events)) >= 2)
    assert [(e.payload.kind, e.payload.change) for e in changed_only(view_events)] == [
        ("cluster", "found"), ("node", "added")]


async def test_a_gap_leads_to_a_resync_equal_to_discovery(
    redis_client: aioredis.Redis, names: Names, start_registry: StartRegistry, view_events: list[Any]
) -> None:
    feed = DiscoveryFeed(redis_client, names)
    await feed.cluster_found(make_cluster(1))
    await feed.reset()
    worker = await start_registry(check_interval=60)  # only the gap may trigger the resync
    epoch = (await ViewReader(redis_client, names).snapshot()).epoch
    for i in range(5):
        await feed.node_upsert(make_node("c1", i), publish=False)  # lost messages
    await feed.node_upsert(make_node("c1", 7))
    assert await wait_equal(redis_client, names) == []
    snap = await ViewReader(redis_client, names).snapshot()
    assert sorted(snap.nodes) == [f"c1-n000{i}" for i in (0, 1, 2, 3, 4, 7)]
    assert snap.epoch == epoch  # a resync keeps the epoch: only a lost view gets a new one
    assert await wait_for(lambda: any(isinstance(e, ViewResetEvent) for e in view_events))
    assert worker.resyncs >= 2


async def test_a_lost_last_message_is_caught_by_the_periodic_check(
    redis_client: aioredis.Redis, names: Names, start_registry: StartRegistry
) -> None:
    feed = DiscoveryFeed(redis_client, names)
    await feed.reset()
    await start_registry(check_interval=0.2)
    await feed.cluster_found(make_cluster(1))
    await feed.node_upsert(make_node("c1", 0), publish=False)  # nothing follows to reveal the gap
    assert await wait_equal(redis_client, names) == []
    assert "c1-n0000" in (await ViewReader(redis_client, names).snapshot()).nodes


async def test_source_reset_and_a_new_source_rebuild_the_view(
    redis_client: aioredis.Redis, names: Names, start_registry: StartRegistry
) -> None:
    feed = DiscoveryFeed(redis_client, names)
    await feed.reset()
    await start_registry(check_interval=60)
    await feed.cluster_found(make_cluster(1))
    for i in range(3):
        await feed.node_upsert(make_node("c1", i))
    assert await wait_equal(redis_client, names) == []

    # Discovery restarts: a new source with a different state, announced by source-reset.
    restarted = DiscoveryFeed(redis_client, names)
    restarted.clusters = {"c2": make_cluster(2)}
    restarted.nodes = {n.id: n for n in (make_node("c2", 0), make_node("c2", 1))}
    await restarted.reset()
    assert await wait_equal(redis_client, names) == []
    assert sorted((await ViewReader(redis_client, names).snapshot()).nodes) == ["c2-n0000", "c2-n0001"]

    # Another source whose reset was lost: its first event reveals it.
    third = DiscoveryFeed(redis_client, names)
    third.clusters = dict(restarted.clusters)
    await third.reset(publish=False)
    await third.cluster_found(make_cluster(3))
    assert await wait_equal(redis_client, names) == []
    assert sorted((await ViewReader(redis_client, names).snapshot()).clusters) == ["c2", "c3"]


async def test_a_removed_cluster_leaves_the_view_with_its_nodes(
    redis_client: aioredis.Redis, names: Names, start_registry: StartRegistry, view_events: list[Any]
) -> None:
    feed = DiscoveryFeed(redis_client, names)
    await feed.reset()
    await start_registry()
    for c in (1, 2):
        await feed.cluster_found(make_cluster(c))
        for i in range(2):
            await feed.node_upsert(make_node(f"c{c}", i))
    await feed.cluster_removed("c1")
    assert await wait_equal(redis_client, names) == []
    snap = await ViewReader(redis_client, names).snapshot()
    assert (sorted(snap.clusters), sorted(snap.nodes)) == (["c2"], ["c2-n0000", "c2-n0001"])
    assert await wait_for(lambda: len(changed_only(view_events)) >= 9)
    assert [(e.payload.kind, e.payload.change, e.payload.id) for e in changed_only(view_events)[-3:]] == [
        ("node", "removed", "c1-n0000"), ("node", "removed", "c1-n0001"), ("cluster", "removed", "c1")]


async def test_a_restarted_worker_on_an_equal_view_does_not_reset_clients(
    redis_client: aioredis.Redis, names: Names, start_registry: StartRegistry, view_events: list[Any]
) -> None:
    feed = DiscoveryFeed(redis_client, names)
    await feed.reset()
    first = await start_registry()
    await feed.cluster_found(make_cluster(1))
    assert await wait_equal(redis_client, names) == []
    assert await wait_for(lambda: len(view_events) >= 2)  # the view's creation, then the cluster
    before = await ViewReader(redis_client, names).snapshot()
    await first.close()
    seen = len(view_events)
    second = await start_registry()
    assert second.resyncs >= 1
    after = await ViewReader(redis_client, names).snapshot()
    assert (after.epoch, after.version) == (before.epoch, before.version)
    await feed.node_upsert(make_node("c1", 0))
    assert await wait_for(lambda: len(view_events) >= seen + 1)
    assert [type(e) for e in view_events[seen:]] == [ViewChangedEvent]


def test_the_hot_path_template_is_exactly_the_encoded_event() -> None:
    node = make_node("c1", 3)
    change = ViewChange("node-changed", "updated", node.id, node, {"state": {"old": "ALIVE", "new": "DEAD"}})
    data, seq_at, epoch_at, version_at = view_changed_template(change, node.model_dump(mode="json"))
    decoded = codec.decode(data)
    assert isinstance(decoded, ViewChangedEvent)
    assert data == codec.encode(decoded)  # same bytes as the models produce
    located = Template.of(decoded)
    assert (located.seq_at, located.epoch_at, located.version_at) == (seq_at, epoch_at, version_at)


async def test_a_batch_stops_applying_at_a_gap(redis_client: aioredis.Redis, names: Names) -> None:
    view, feed = MergedView(redis_client, names), DiscoveryFeed(redis_client, names)
    await feed.reset()
    await view.resync()
    first = await feed.cluster_found(make_cluster(1))
    second = await feed.node_upsert(make_node("c1", 0))
    await feed.node_upsert(make_node("c1", 1), publish=False)
    fourth = await feed.node_upsert(make_node("c1", 2))
    results = await view.apply_many([first, second, first, fourth, second])
    assert [r.outcome for r in results] == ["applied", "applied", "duplicate", "resync", "duplicate"]
    assert (await view.resync()).outcome == "rebuilt"
    assert await view_differs(redis_client, names) == []
