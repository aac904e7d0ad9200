"""The two Lua scripts that change the view, and the event templates they fill in.

Every change to the view runs inside Redis as one script, so two registry replicas can never interleave
half-applied changes: the script checks the event's source and seq against ``view_meta``, writes the
record, bumps the version, appends to the log and publishes, all at once; a duplicate is a no-op.

The view-changed event a script publishes must carry the version (and epoch) only the script knows. We
encode the whole event in Python with fixed-size placeholders and pass their byte offsets; the script
splices in the real values. A placeholder int is msgpack uint64 (``0xcf`` + 8 bytes), which any msgpack
decoder reads as a plain int, so the published bytes are exactly ``codec.encode`` of the final event.
"""

from __future__ import annotations

from dataclasses import dataclass

from castray.shared import codec
from castray.shared.events import Event

# Fixed-size stand-ins for what only the script knows (the version is also the envelope's seq).
INT_PLACEHOLDER = 0xCAFE_F00D_0BAD_BEEF
EPOCH_PLACEHOLDER = "@EPOCH@PLACEHLD@"
INT_BYTES = b"\xcf" + INT_PLACEHOLDER.to_bytes(8, "big")
EPOCH_BYTES = codec.pack(EPOCH_PLACEHOLDER)


@dataclass(frozen=True, slots=True)
class Template:
    """An encoded event and where its envelope seq, payload epoch and payload version sit."""

    data: bytes
    seq_at: int
    epoch_at: int
    version_at: int

    @classmethod
    def of(cls, event: Event) -> Template:
        """Encode ``event`` (built with the placeholders) and locate them."""
        data = codec.encode(event)
        seq_at = data.find(INT_BYTES)
        epoch_at = data.find(EPOCH_BYTES, seq_at + 1)
        version_at = data.find(INT_BYTES, epoch_at + 1)
        if min(seq_at, epoch_at, version_at) < 0:
            raise ValueError("event template lacks its placeholders")
        return cls(data, seq_at, epoch_at, version_at)

    def args(self) -> list[bytes | int]:
        return [self.data, self.seq_at, self.epoch_at, self.version_at]


_SPLICE = """
local function u64(n)
  local b = {}
  for i = 8, 1, -1 do
    b[i] = n % 256
    n = (n - b[i]) / 256
  end
  return string.char(0xcf, unpack(b))
end

local function mpstr(s)
  if #s < 32 then return string.char(0xa0 + #s) .. s end
  return string.char(0xd9, #s) .. s
end

-- tpl, then 0-based offsets of the seq, epoch and version placeholders (in that order)
local function splice(tpl, seq_at, epoch_at, version_at, epoch, version)
  local v = u64(version)
  return string.sub(tpl, 1, seq_at) .. v
    .. string.sub(tpl, seq_at + 10, epoch_at) .. mpstr(epoch)
    .. string.sub(tpl, epoch_at + 18, version_at) .. v
    .. string.sub(tpl, version_at + 10)
end

local function emit(log, channel, maxlen, data, version)
  -- pcall: an XADD refusal must not leave a half-done change behind (scripts do not roll back)
  redis.pcall('XADD', log, 'MAXLEN', '~', maxlen, version .. '-0', 'data', data)
  redis.call('PUBLISH', channel, data)
end
"""

# KEYS: view_meta, view_clusters or view_nodes (the hash the record goes to), view_log
# ARGV: source, seq, id, record ('' removes it), template, seq_at, epoch_at, version_at, maxlen, channel
# Returns {'applied', version} | {'duplicate', version} | {'resync', reason}
APPLY = _SPLICE + """
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'version', 'source', 'seq')
local epoch = meta[1]
if not epoch then return {'resync', 'no view'} end
if meta[3] ~= ARGV[1] then return {'resync', 'new source'} end
local seq = tonumber(ARGV[2])
local applied = tonumber(meta[4] or '0')
if seq <= applied then return {'duplicate', tonumber(meta[2] or '0')} end
if seq > applied + 1 then return {'resync', 'gap'} end
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[2], ARGV[3])
else
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'seq', ARGV[2])
local data = splice(ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), epoch, version)
emit(KEYS[3], ARGV[10], ARGV[9], data, version)
return {'applied', version}
"""

# KEYS: view_meta, view_clusters, view_nodes, view_log, discovery_meta, discovery_clusters, discovery_nodes
# ARGV: new epoch (used only when there is no view), template, seq_at, epoch_at, version_at, maxlen, channel
# Returns {'unchanged' | 'rebuilt' | 'created', version, epoch, source, seq}
RESYNC = _SPLICE + """
local function same_hash(a, b)
  if redis.call('HLEN', a) ~= redis.call('HLEN', b) then return false end
  local m = {}
  local flat = redis.call('HGETALL', b)
  for i = 1, #flat, 2 do m[flat[i]] = flat[i + 1] end
  flat = redis.call('HGETALL', a)
  for i = 1, #flat, 2 do
    if m[flat[i]] ~= flat[i + 1] then return false end
  end
  return true
end

local dmeta = redis.call('HMGET', KEYS[5], 'source', 'seq')
local source = dmeta[1] or ''
local seq = dmeta[2] or '0'
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local outcome = 'rebuilt'
if epoch and same_hash(KEYS[2], KEYS[6]) and same_hash(KEYS[3], KEYS[7]) then
  -- already equal: adopt discovery's position, nothing for clients to redo
  redis.call('HSET', KEYS[1], 'source', source, 'seq', seq)
  return {'unchanged', tonumber(redis.call('HGET', KEYS[1], 'version') or '0'), epoch, source, seq}
end
if not epoch then
  -- no view (first start, or Redis lost its data): a new epoch, and a log that starts over
  epoch = ARGV[1]
  outcome = 'created'
  redis.call('DEL', KEYS[1], KEYS[4])
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('COPY', KEYS[6], KEYS[2])
redis.call('COPY', KEYS[7], KEYS[3])
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'epoch', epoch, 'source', source, 'seq', seq)
local data = splice(ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), epoch, version)
emit(KEYS[4], ARGV[7], ARGV[6], data, version)
return {outcome, version, epoch, source, seq}
"""
