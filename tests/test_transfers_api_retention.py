"""Retention of finished transfer records and their index entries, by count and by age, applied when the
gateway queues a transfer; queued and running transfers, and ones that just finished, are kept."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from castray.gateway.retention import BATCH, trim_transfers
from castray.shared import codec
from castray.shared.names import Names
from castray.shared.transfers import Destination, TransferRecord, TransferState
from tests.support.gateway_files import STANDARD_VIEW, gateway, seed_view

HOUR = 3600.0


async def _stored(redis: aioredis.Redis, names: Names, age: float, state: TransferState,
                  finished_ago: float | None = None) -> str:
    """A record created ``age`` seconds ago, indexed as the gateway indexes it; its id."""
    now = time.time()
    ago = age if finished_ago is None else finished_ago
    finished = None if state in ("queued", "running") else now - ago
    rec = TransferRecord(id=uuid.uuid4().hex, state=state, mode="unicast", source={"generate": {"size": 1}},
                         file_name="r.bin", created_at=now - age, finished_at=finished,
                         destinations=[Destination(node_id="c1-w1")])
    await redis.set(names.transfer(rec.id), codec.encode(rec))
    await redis.zadd(names.transfer_index, {rec.id: rec.created_at})
    return rec.id


async def _queue_one(namespace: str, data_dir: Path, **settings: float) -> str:
    async with gateway(namespace, data_dir, **settings) as client:
        resp = await client.post("/api/transfers", json={"source": {"generate": {"size": "1KB"}},
                                                         "mode": "unicast", "targets": ["c1-w1"]})
        body = await resp.json()
        assert resp.status == 202, body
        return str(body["id"])


async def _kept(redis: aioredis.Redis, names: Names, ids: list[str]) -> list[str]:
    indexed = {m.decode() for m in await redis.zrange(names.transfer_index, 0, -1)}
    return [i for i in ids if i in indexed and await redis.exists(names.transfer(i))]


async def test_beyond_the_count_the_oldest_finished_records_go_with_their_index(
    namespace: str, names: Names, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    await seed_view(redis_client, names, STANDARD_VIEW)
    old = [await _stored(redis_client, names, 10 * HOUR - i, "completed") for i in range(4)]
    running = await _stored(redis_client, names, 11 * HOUR, "running")
    failed = await _stored(redis_client, names, 9 * HOUR, "failed")
    just_done = await _stored(redis_client, names, 12 * HOUR, "cancelled", finished_ago=5.0)
    dangling = uuid.uuid4().hex  # an index entry whose record is gone
    await redis_client.zadd(names.transfer_index, {dangling: time.time() - 13 * HOUR})
    new = await _queue_one(namespace, tmp_path / "data", transfer_records_max_count=3,
                           transfer_records_max_age=0)
    # 9 indexed, keep 3 by count: of the 6 oldest, the running one and the one finished seconds ago stay
    assert await _kept(redis_client, names, [*old, running, failed, just_done, dangling, new]) == [
        old[3], running, failed, just_done, new]
    assert await redis_client.zcard(names.transfer_index) == 5


async def test_past_the_age_finished_records_go(
    namespace: str, names: Names, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    await seed_view(redis_client, names, STANDARD_VIEW)
    stale = await _stored(redis_client, names, 3 * HOUR, "completed")
    stale_failed = await _stored(redis_client, names, 2 * HOUR, "failed")
    queued = await _stored(redis_client, names, 5 * HOUR, "queued")
    recent = await _stored(redis_client, names, 0.5 * HOUR, "completed")
    new = await _queue_one(namespace, tmp_path / "data", transfer_records_max_age=HOUR,
                           transfer_records_max_count=0)
    kept = await _kept(redis_client, names, [stale, stale_failed, queued, recent, new])
    assert kept == [queued, recent, new]
    assert not await redis_client.exists(names.transfer(stale))



async def test_records_it_must_keep_at_the_front_never_stop_it(redis_client: aioredis.Redis,
                                                               names: Names) -> None:
    """More running transfers than one page at the oldest end, and an unreadable record: the finished
    ones behind them still go when past the age."""
    running = [await _stored(redis_client, names, 10 * HOUR - i, "running") for i in range(BATCH + 5)]
    finished = [await _stored(redis_client, names, 5 * HOUR - i, "completed", finished_ago=4 * HOUR)
                for i in range(10)]
    await redis_client.set(names.transfer("garbled"), b"\x81\x91\x01\x02")
    await redis_client.zadd(names.transfer_index, {"garbled": time.time() - 20 * HOUR})
    removed = await trim_transfers(redis_client, names, max_age=HOUR, max_count=0)
    assert removed == len(finished) + 1
    assert await _kept(redis_client, names, running) == running
    assert await _kept(redis_client, names, [*finished, "garbled"]) == []
