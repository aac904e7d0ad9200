"""A broadcast that feeds itself: the destinations of a transfer as a pipelined chain.

In a star (`castray.transfer.pipeline._stream`) every destination pulls each chunk from the source's node,
which sends each byte N times. Here each destination's agent, beside writing a chunk (`NodeAgent.write`),
hands it back (`NodeAgent.forward`, which waits for nothing but the chunk's arrival): a new object in
*its* node's store, owned by the driver, whose ObjectRef is the next destination's input. So Ray pulls
chunk i to node k+1 from node k as soon as node k has it, while node k writes it and pulls chunk i+1:
the source sends each byte once, and every link carries one copy at a time, whatever N is. The driver
never waits inside a chunk: it submits the whole chain of calls for a chunk at once and only waits, in
order, for the chunk that leaves the window.

- **Order**: destinations grouped by address (a host appears once in a row), the source's host first, so a
  copy crosses each host's link once.
- **Window**: ``plan.inflight`` chunks in flight, plus one per hop after the first (a chunk is in flight
  until the last node has it), fewer if the smallest object store of the chain cannot hold them: a
  destination holds up to two copies of each chunk in flight (the one it pulled, the one it forwards),
  and Ray spills beyond 80 % of a store, so the window keeps within `STORE_SHARE` of its free memory
  (`window_size`). And never more than the slowest link delivers within Ray's pull timeout:
  ``window x chunk_bytes <= hops x PULL_SHARE x rate x pull timeout`` (`castray.transfer.pacing.Window`: the
  chunks in flight are spread over the chain's hops, each link queueing its share; the rate is the plan's
  ``rate_limit`` or how fast chunks leave the window, two chunks a hop until one is known), since a chunk
  queued longer than that is pulled again and sent twice.
- **A node that dies mid-chain** is routed around. Its successors' calls fail without running (their
  input was lost, or never made), so their copies' next chunk is unchanged (`castray.transfer.sink.Ordered`).
  `_Chain.recover` asks the copies behind the failure where they stand (`NodeAgent.rewind`, which also
  refuses whatever of theirs is still queued), all at once: a node that does not answer fails with the
  reason, the others get the chunks they miss re-issued in order, each from the nearest live upstream copy,
  else from the source's (still in the window). The copies before the failure are not asked: their calls
  stand, and their copies are what is re-issued after them (`_Chain.downstream`).
- **A node that hangs without dying** (its worker stopped, its raylet still healthy) is failed once the
  oldest chunk's writes are not all done within `castray.transfer.pacing.chunk_deadline`: the first
  silent copy down the chain fails ("node did not answer in time"), those after it are routed around.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from castray.transfer import direct
from castray.transfer.errors import TransferError
from castray.transfer.pacing import NOT_ANSWERED, Pacer, Window, chunk_deadline
from castray.transfer.reasons import reason
from castray.transfer.sources import AgentReader, HereReader

if TYPE_CHECKING:
    from castray.transfer.pipeline import _Run

log = logging.getLogger(__name__)
STORE_SHARE = 0.5  # of a node's free object store one transfer's window may fill (Ray spills at 80 %)
REWIND_TIMEOUT = 30.0  # seconds for a copy to say where it stands after a failure, else it failed
STUCK_LIMIT = 3  # recoveries in a row that route around no one: the failing copies fail


@dataclass
class _Call:
    """One destination's call for one chunk: the bytes written, and its copy of the chunk to forward."""

    done: Any
    copy: Any | None  # None: nobody after it needed this chunk


@dataclass
class _Chunk:
    index: int
    data: Any  # the source's ObjectRef
    digest: Any
    calls: dict[str, _Call] = field(default_factory=dict)  # by destination node id


class _Chain:
    def __init__(self, run: _Run, source_ip: str) -> None:
        self.run = run
        self.order = chain_order(run, source_ip)
        self.epochs = dict.fromkeys(self.order, 0)
        self.errors: dict[str, BaseException] = {}
        self.gone: set[str] = set()  # copies already routed around
        self.sizer = Window(run.plan, run.plan.inflight)  # `stream` sets the chain's own
        self.stuck = 0

    def issue(self, chunk: _Chunk, needs: Callable[[str], bool]) -> None:
        """Submit the chunk's calls down the chain to every live destination that ``needs`` it; one
        that has it already passes its own copy on."""
        order = [n for n in self.order if n in self.run.alive]
        wanted = [n for n in order if needs(n)]
        src = chunk.data
        for node_id in order:
            if node_id not in wanted:
                held = chunk.calls.get(node_id)
                if held is not None and held.copy is not None:
                    src = held.copy  # it wrote this chunk: the nearest live upstream copy
                continue
            agent = self.run.agents.get(self.run.node(self.run.alive[node_id]))
            key, epoch = self.run.sink(self.run.alive[node_id]), self.epochs[node_id]
            done = agent.write.remote(key, chunk.index, src, chunk.digest, epoch)
            copy = agent.forward.remote(src) if node_id != wanted[-1] else None
            chunk.calls[node_id] = _Call(done, copy)
            src = copy if copy is not None else src

    def settle(self, chunk: _Chunk) -> bool:
        """Wait for the chunk's writes, up to `pacing.chunk_deadline`; False if one failed or did not
        answer: the first silent copy down the chain fails (those after it wait on its copy), the rest
        are routed around (a failed read fails everyone: True)."""
        deadline = chunk_deadline(self.run.plan)
        try:
            if not isinstance(chunk.digest, str):  # read by an agent (read here: already done)
                ray.get(chunk.digest, timeout=deadline)
        except (RayError, GetTimeoutError) as e:
            why = f"reading the source failed: {reason(e)}"
            for dest in list(self.run.alive.values()):
                self.run.fail_dest(dest, why)
            return True
        self.errors.clear()
        calls = {n: c.done for n, c in chunk.calls.items() if n in self.run.alive}
        if not calls:
            return True
        ready, _ = ray.wait(list(calls.values()), num_returns=len(calls), timeout=deadline)
        silent = [n for n, ref in calls.items() if ref not in ready]
        for node_id in silent[:1]:
            log.warning("transfer %s: %s silent for %.0f s", self.run.plan.id, node_id, deadline)
            self.run.fail_dest(self.run.alive[node_id], NOT_ANSWERED)
        for node_id in silent[1:]:
            self.errors[node_id] = TransferError(f"waiting on a copy from a node that {NOT_ANSWERED}")
        for node_id, ref in calls.items():
            if node_id in silent:
                continue
            try:
                self.run.written[node_id] = int(ray.get(ref))
            except RayError as e:
                self.errors[node_id] = e
        return not self.errors and not silent

    def recover(self, window: deque[_Chunk]) -> None:
        """Route around what failed: ask the copies after it (`downstream`) where they stand; re-issue
        what each misses."""
        run, failed = self.run, 0
        behind = self.downstream()
        log.info("transfer %s: rewinding %s", run.plan.id, ",".join(behind))
        asked = {n: run.agents.get(run.node(run.alive[n])).rewind.remote(run.sink(run.alive[n]))
                 for n in behind}
        stands: dict[str, int] = {}
        # All at once: N copies that do not answer cost one timeout, not N.
        refs = list(asked.values())
        ready = ray.wait(refs, num_returns=len(refs), timeout=REWIND_TIMEOUT)[0] if refs else []
        for node_id, ref in asked.items():
            try:
                if ref not in ready:
                    raise GetTimeoutError(NOT_ANSWERED)
                state = ray.get(ref)
            except (RayError, GetTimeoutError) as e:
                log.info("transfer %s: %s left the chain: %s", run.plan.id, node_id, reason(e))
                run.fail_dest(run.alive[node_id], reason(e))
                failed += 1
                continue
            self.epochs[node_id], stands[node_id] = state["epoch"], state["next"]
        self.stuck = 0 if failed else self.stuck + 1
        if self.stuck >= STUCK_LIMIT:  # the same calls keep failing, though every node answers
            for node_id, error in self.errors.items():
                if node_id in run.alive:
                    run.fail_dest(run.alive[node_id], reason(error))
            self.stuck = 0
        self.gone.update(n for n in self.order if n not in run.alive)
        for chunk in window:
            self.issue(chunk, partial(_misses, stands, chunk.index))

    def downstream(self) -> list[str]:
        """The live copies whose input came through what failed: from the first copy down the chain that
        failed or left since the last recovery, to the end. Those before it are untouched: their calls
        stand, and their copies feed what is re-issued after them."""
        for i, node_id in enumerate(self.order):
            if node_id in self.errors or (node_id not in self.run.alive and node_id not in self.gone):
                return [n for n in self.order[i:] if n in self.run.alive]
        return [n for n in self.order if n in self.run.alive]  # nothing known to fail: ask everyone


def _misses(stands: dict[str, int], index: int, node_id: str) -> bool:
    """Does the copy on ``node_id`` (its next chunk in ``stands``, if it still stands) miss ``index``?"""
    return node_id in stands and stands[node_id] <= index


def chain_order(run: _Run, source_ip: str) -> list[str]:
    """The live destinations, grouped by address (each host once in a row), the source's host first."""
    groups: dict[str, list[str]] = {}
    for node_id, dest in run.alive.items():
        groups.setdefault(run.agents.ips.get(run.node(dest), ""), []).append(node_id)
    first = groups.pop(source_ip, [])
    return first + [n for members in groups.values() for n in members]


def window_size(inflight: int, chunk_bytes: int, ray_nodes: set[str]) -> int:
    """``inflight``, or fewer chunks if the chain's smallest free object store cannot hold them."""
    try:
        total = {n["NodeID"]: float(n["Resources"].get("object_store_memory", math.inf))
                 for n in ray.nodes() if n.get("Alive")}  # type: ignore[no-untyped-call]
        free = ray._private.state.available_resources_per_node()  # type: ignore[no-untyped-call]
    except Exception as e:  # noqa: BLE001 - a private API: without it, the plan's window as it is
        log.warning("object store sizes unknown (%s): %d chunks in flight", e, inflight)
        return inflight
    room = min((min(total.get(n, math.inf), float(free.get(n, {}).get("object_store_memory", math.inf)))
                for n in ray_nodes), default=math.inf)
    if math.isinf(room):
        return inflight
    return max(1, min(inflight, int(room * STORE_SHARE // (2 * chunk_bytes))))


def _node_ip() -> str:
    return str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]


def stream(run: _Run, reader: AgentReader | HereReader) -> None:
    """Stream the source down the chain of ``run``'s live destinations (blocking): over direct connections
    if the plan says so (`castray.transfer.direct`), with this chain as its fallback."""
    if run.plan.direct and direct.usable(run, reader):
        here = isinstance(reader, HereReader)
        order = chain_order(run, _node_ip() if here else run.agents.ips.get(run.source_node, ""))
        direct.stream(run, reader, order, partial(_stream, run, reader))
        return
    _stream(run, reader)


def _stream(run: _Run, reader: AgentReader | HereReader, resume: direct.Resume | None = None) -> None:
    """The chain through Ray; ``resume``: from where each copy stands (the reader is at its first chunk),
    each given only the chunks it misses."""
    plan, size, step = run.plan, run.size, run.plan.chunk_bytes
    here = isinstance(reader, HereReader)
    source = run.local if here else run.source_node
    chain = _Chain(run, _node_ip() if here else run.agents.ips.get(source, ""))
    first = 0
    if resume is not None:
        chain.epochs.update({n: e for n, e in resume.epochs.items() if n in chain.epochs})
        first = resume.first
    # A chunk is in flight until the chain's last node has it: one more per hop keeps every link as busy
    # as a star's one link with ``plan.inflight``.
    wanted = plan.inflight + len(chain.order) - 1
    limit = window_size(wanted, step, {source, *(run.node(d) for d in run.alive.values())})
    log.info("transfer %s: chain of %d, %d chunks in flight", plan.id, len(chain.order), limit)
    window: deque[_Chunk] = deque()
    chain.sizer = Window(plan, limit, links=len(chain.order))
    pacer = Pacer(plan, run.cancelled, run.emit, run.written)
    for index, offset in enumerate(range(first * step, size, step), first):
        if run.cancelled.is_set() or not run.alive:
            break
        data, digest = reader.read(index, min(step, size - offset))
        chunk = _Chunk(index, data, digest)
        chain.issue(chunk, (lambda _: True) if resume is None else partial(_misses, resume.stands, index))
        window.append(chunk)
        while len(window) >= chain.sizer.size() and run.alive:
            _pop(chain, window)
        pacer.sent(offset + step - first * step)  # the rate counts from where it starts
    while window and run.alive:
        _pop(chain, window)
    pacer.report()


def _pop(chain: _Chain, window: deque[_Chunk]) -> None:
    """Settle the oldest chunk, or route around what failed and leave it for the next try."""
    if chain.settle(window[0]):
        chain.stuck = 0
        window.popleft()
        chain.sizer.settled(chain.run.plan.chunk_bytes)
    elif chain.run.alive:
        chain.recover(window)
