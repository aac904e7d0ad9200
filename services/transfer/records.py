"""Transfer records and leases in Redis.

The record at ``Names.transfer(id)`` is shared with the gateway, which may set ``cancel_requested`` (and
``state = cancelled`` while queued) at any time; `RecordStore.save` therefore writes under WATCH and
keeps the gateway's cancel flag, so neither side loses the other's change.

The lease at ``Names.transfer_lease(id)`` names the one replica running a transfer; it expires unless
renewed, so a replica that died loses it and another can take the transfer over.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from castray.shared import codec
from castray.shared.errors import EventDecodeError
from castray.shared.lease import Lease
from castray.shared.names import Names
from castray.shared.transfers import TransferRecord
from castray.transfer.errors import UnreadableRecord


class RecordStore:
    def __init__(self, redis: aioredis.Redis, names: Names) -> None:
        self.redis, self.names = redis, names

    async def load(self, transfer_id: str) -> TransferRecord | None:
        """The stored record (None if there is none; `UnreadableRecord` if it does not decode)."""
        raw = await self.redis.get(self.names.transfer(transfer_id))
        if raw is None:
            return None
        try:
            return codec.decode_model(raw, TransferRecord)
        except EventDecodeError as e:
            raise UnreadableRecord(f"the record of transfer {transfer_id} is unreadable: {e}") from None

    async def save(self, record: TransferRecord) -> TransferRecord:
        """Write ``record``, keeping a cancel request stored meanwhile; returns what was written."""
        key = self.names.transfer(record.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is not None:
                        try:
                            stored = codec.decode_model(raw, TransferRecord)
                            if stored.cancel_requested or stored.state == "cancelled":
                                record.cancel_requested = True
                        except EventDecodeError:
                            pass
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(key, codec.encode(record))
                    await pipe.execute()
                    return record
                except WatchError:
                    continue

    # --- leases -----------------------------------------------------------------------------------
    def lease(self, transfer_id: str, owner: str, ttl_ms: int) -> Lease:
        """The lease naming the one replica (``owner``) that runs ``transfer_id``."""
        return Lease(self.redis, self.names.transfer_lease(transfer_id), owner, ttl_ms)
