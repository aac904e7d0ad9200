"""Retention of finished transfer records: by age and by count, applied when a transfer is queued.

Why on write and not on a timer: the records only grow when the gateway queues a transfer, so trimming
there bounds them as tightly as a timer would, with no background task to run and nothing to coordinate
between gateway replicas (two trimming at once delete the same keys; deleting is idempotent). Each pass
looks at no more than ``PAGES * BATCH`` of the oldest entries, so a write never waits on a long sweep, and
later writes take the rest. An idle installation keeps its records until its next write.

Removed: a record (``Names.transfer(id)``) whose state is completed, failed or cancelled, that finished
more than ``GRACE_S`` ago (its request's stream entry may still await its acknowledgement just after), and
that is older than ``max_age`` seconds or not among the newest ``max_count``; its entry in the index
(``Names.transfer_index``) goes with it, as does an index entry whose record is already gone. Queued and
running transfers are never removed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.asyncio as aioredis

from castray.shared import codec
from castray.shared.errors import EventDecodeError
from castray.shared.names import Names
from castray.shared.transfers import FINAL_STATES, TransferRecord

log = logging.getLogger(__name__)
BATCH = 200
PAGES = 5
GRACE_S = 300.0


async def trim_transfers(redis: aioredis.Redis, names: Names, *, max_age: float, max_count: int,
                         now: float | None = None) -> int:
    """Remove finished transfer records past ``max_age`` seconds (0: no age limit) or beyond the newest
    ``max_count`` (0: no count limit); how many were removed. It pages through the oldest entries (at most
    ``PAGES`` pages of ``BATCH``) past the ones it must keep (queued, running, just finished), so those can
    never stop it for good."""
    now = time.time() if now is None else now
    index = names.transfer_index
    cutoff = now - max_age if max_age > 0 else float("-inf")
    excess = await redis.zcard(index) - max_count if max_count > 0 else 0
    doomed: list[str] = []
    for page in range(PAGES):
        entries: list[Any] = await redis.zrange(index, page * BATCH, (page + 1) * BATCH - 1, withscores=True)
        eligible = [str(codec.as_text(member))
                    for n, (member, score) in enumerate(entries, start=page * BATCH)
                    if score <= cutoff or n < excess]
        if not eligible:
            break  # the index is in time order: nothing after this page is eligible either
        raws = await redis.mget([names.transfer(i) for i in eligible])
        doomed += [i for i, raw in zip(eligible, raws, strict=True) if _removable(raw, now)]
    if not doomed:
        return 0
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(*[names.transfer(i) for i in doomed])
        pipe.zrem(index, *doomed)
        await pipe.execute()
    log.info("retention removed %d finished transfer records", len(doomed))
    return len(doomed)


def _removable(raw: bytes | str | None, now: float) -> bool:
    if raw is None:
        return True  # an index entry left without its record
    try:
        record = codec.decode_model(raw, TransferRecord)
    except EventDecodeError:
        log.warning("retention removes an unreadable transfer record past its limits")
        return True  # nothing can read it (not the API, not a worker): keeping it would only block
    return record.state in FINAL_STATES and now - (record.finished_at or record.created_at) > GRACE_S
