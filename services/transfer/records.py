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
from castray.shared.names import Names
from castray.shared.transfers import TransferRecord

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RecordStore:
    def __init__(self, redis: aioredis.Redis, names: Names) -> None:
        self.redis, self.names = redis, names

    async def load(self, transfer_id: str) -> TransferRecord | None:
        raw = await self.redis.get(self.names.transfer(transfer_id))
        if raw is None:
            return None
        try:
            return codec.decode_model(raw, TransferRecord)
        except EventDecodeError:
            return None

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
                    pipe.set(key, codec.encode_model(record))
                    await pipe.execute()
                    return record
                except WatchError:
                    continue

    async def ensure_indexed(self, record: TransferRecord) -> None:
        await self.redis.zadd(self.names.transfer_index, {record.id: record.created_at}, nx=True)

    # --- leases -----------------------------------------------------------------------------------
    async def acquire(self, transfer_id: str, owner: str, ttl_ms: int) -> bool:
        key = self.names.transfer_lease(transfer_id)
        if await self.redis.set(key, owner, nx=True, px=ttl_ms):
            return True
        current = await self.redis.get(key)
        if current is None or (current.decode() if isinstance(current, bytes) else current) != owner:
            return False
        return await self.renew(transfer_id, owner, ttl_ms)

    async def renew(self, transfer_id: str, owner: str, ttl_ms: int) -> bool:
        key = self.names.transfer_lease(transfer_id)
        return bool(await self.redis.eval(_RENEW, 1, key, owner, ttl_ms))

    async def release(self, transfer_id: str, owner: str) -> None:
        await self.redis.eval(_RELEASE, 1, self.names.transfer_lease(transfer_id), owner)
