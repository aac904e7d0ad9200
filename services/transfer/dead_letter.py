"""Poison requests: a transfer request whose handling raised an unexpected error (a bug) or whose replica
died ``max_deliveries`` times is given up instead of being re-claimed forever; one whose stored record no
model reads (`castray.transfer.errors.UnreadableRecord`) is given up on its first delivery, since every
delivery would fail the same way. Its record fails with the reason (an unreadable one is left as it is:
the log and the dead letter say why), the stream entry is acknowledged and a copy goes to the dead-letter
stream ``Names.transfer_dead_letters`` for a person to look at.

Attempts are counted in the record (``TransferRecord.attempts``), when a replica takes the transfer's
lease, so the count survives every replica's restart and a claim that found a live replica's lease does
not count. Before the record is read, Redis's delivery count of the entry stands in for it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.asyncio as aioredis

from castray.shared import codec
from castray.shared.bus import Bus
from castray.shared.events import TransferFailed
from castray.shared.names import TRANSFER_GROUP
from castray.shared.transfers import FINAL_STATES, QueuedTransfer
from castray.transfer.errors import UnreadableRecord
from castray.transfer.records import RecordStore

log = logging.getLogger(__name__)
DEAD_LETTER_MAXLEN = 10_000


async def deliveries(redis: aioredis.Redis, stream: str, entry_id: str) -> int:
    """How many times the group has delivered ``entry_id`` (0 if it is no longer pending)."""
    rows: Any = await redis.xpending_range(stream, TRANSFER_GROUP, min=entry_id, max=entry_id, count=1)
    return int(rows[0]["times_delivered"]) if rows else 0


def crash_reason(error: BaseException, count: int) -> str:
    """The record's error for a request that raised ``error`` on its last allowed delivery."""
    return f"gave up after {count} deliveries: unexpected {type(error).__name__}: {str(error)[:500]}"


def died_reason(count: int) -> str:
    """The record's error for a request delivered too often without an outcome (its handling raised
    each time, or killed its replica)."""
    return f"gave up after {count} deliveries: its handling never finished (it raised or its replica died)"


async def give_up(*, bus: Bus, store: RecordStore, stream: str, entry_id: str, queued: QueuedTransfer,
                  count: int, reason: str) -> None:
    """Fail the record with ``reason``, copy the entry to the dead-letter stream and acknowledge it."""
    transfer_id = queued.id
    log.error("transfer request %s (transfer %s) dead-lettered: %s", entry_id, transfer_id, reason)
    try:
        record = await store.load(transfer_id)
    except UnreadableRecord:
        record = None  # nothing can read it to show the reason: the log and the dead letter say it
    if record is not None and record.state not in FINAL_STATES:
        record.state, record.error, record.finished_at = "failed", reason, time.time()
        for d in record.destinations:
            if d.state not in FINAL_STATES:
                d.state, d.error = "failed", reason
        await store.save(record)
        await bus.publish(bus.names.transfer_events,
                          TransferFailed(transfer_id=record.id, node_id=None, error=reason))
    fields = {"transfer_id": transfer_id, "entry_id": entry_id, "deliveries": count, "error": reason,
              "data": codec.pack(queued.model_dump())}
    await bus.redis.xadd(bus.names.transfer_dead_letters, fields,  # type: ignore[arg-type]
                         maxlen=DEAD_LETTER_MAXLEN, approximate=True)
    await bus.ack(stream, TRANSFER_GROUP, entry_id)
