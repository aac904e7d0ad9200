"""One transfer through Ray, run by a driver (blocking; one thread per transfer).

The source is read once, by the agent on the source node, chunk by chunk into its node's object store.
Each chunk's ObjectRef goes to the agent of every destination (the driver never touches the bytes), so
Ray pulls the chunk to each destination node and the agent there hashes and writes it. At most
``inflight`` chunks are outstanding (backpressure: memory stays bounded whatever the file size). A
destination that fails (its node died, its disk is full, a chunk arrived corrupted) is dropped and the
others go on; a source that fails fails them all.

It runs a `castray.transfer.protocol.Plan` as the service built it, and reports `DriverEvent`s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from castray.shared.transfers import FinalState
from castray.transfer import chain
from castray.transfer.agent import FAST, NodeAgent, agent_options
from castray.transfer.errors import TransferError
from castray.transfer.pacing import NOT_ANSWERED, Pacer, Window, chunk_deadline, gather, idle_timeout
from castray.transfer.protocol import (
    DestinationEnded,
    DriverEvent,
    Ended,
    GatewayFile,
    LocalFile,
    Plan,
    PlanDestination,
    Started,
)
from castray.transfer.reasons import reason
from castray.transfer.sink import SinkSpec, temp_name
from castray.transfer.sources import AgentReader, HereReader

log = logging.getLogger(__name__)
Emit = Callable[[DriverEvent], None]
Outcome = tuple[FinalState, str | None, str | None]  # state, sha256, error
ABORT_TIMEOUT = 10.0  # seconds the aborted copies' nodes get to answer, all together, after the stream


class Agents:
    """One `NodeAgent` per Ray node for this driver, created on first use and dropped when it dies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: dict[str, Any] = {}
        self.hosts: dict[str, str] = {}
        self.fast: dict[str, bool] = {}  # node -> its agent has numpy and xxhash (`agent.FAST`)
        self.ips: dict[str, str] = {}  # node -> its address (a broadcast chain groups nodes by it)
        self._remote = ray.remote(NodeAgent)

    def get(self, ray_node_id: str) -> Any:
        with self._lock:
            handle = self._handles.get(ray_node_id)
            if handle is None:
                handle = self._remote.options(**agent_options(ray_node_id)).remote()
                self._handles[ray_node_id] = handle
            return handle

    def forget(self, ray_node_id: str) -> None:
        with self._lock:
            self._handles.pop(ray_node_id, None)

    def ready(self, ray_node_ids: list[str], timeout: float) -> dict[str, str | None]:
        """Start (or check) the agents; node id -> None if ready, else the reason it is not.

        An agent found dead is replaced once: its worker may have died while its node lives on."""
        deadline = time.monotonic() + timeout
        out = self._check(set(ray_node_ids), deadline)
        again = {n for n, why in out.items() if why is not None and why != "node agent did not start"}
        if again:
            out.update(self._check(again, deadline))
        return out

    def _check(self, nodes: set[str], deadline: float) -> dict[str, str | None]:
        refs = {n: self.get(n).info.remote() for n in nodes}
        out: dict[str, str | None] = {}
        for node, ref in refs.items():
            try:
                info = ray.get(ref, timeout=max(0.1, deadline - time.monotonic()))
                self.hosts[node] = info["hostname"]
                self.fast[node] = bool(info.get("fast"))
                self.ips[node] = str(info.get("ip", ""))
                out[node] = None
            except (RayError, GetTimeoutError) as e:
                self.forget(node)
                out[node] = reason(e) if not isinstance(e, GetTimeoutError) else "node agent did not start"
        return out

    def same_host(self, ray_node_id: str, alive: list[str]) -> Any | None:
        host = self.hosts.get(ray_node_id)
        for other in alive:
            if other != ray_node_id and host is not None and self.hosts.get(other) == host:
                return self.get(other)
        return None


@dataclass
class _Run:
    plan: Plan
    agents: Agents
    emit: Emit
    cancelled: threading.Event
    local: str  # the Ray node this driver is attached to: what an empty Ray node id in the plan means
    alive: dict[str, PlanDestination] = field(default_factory=dict)
    aborts: list[_Abort] = field(default_factory=list)  # submitted, not yet settled (`settle_aborts`)
    written: dict[str, int] = field(default_factory=dict)  # bytes written, by destination node id
    size: int = 0
    bytes_read: int = 0

    @property
    def source_node(self) -> str:
        return self.plan.source_ray_node or self.local

    def node(self, dest: PlanDestination) -> str:
        return dest.ray_node_id or self.local

    def sink(self, dest: PlanDestination) -> str:
        """The key of a destination's sink in its agent (two can share a node: a copy and a relay)."""
        return f"{self.plan.id}/{dest.node_id}"

    def ended(self, dest: PlanDestination, state: FinalState, error: str | None = None) -> None:
        self.emit(DestinationEnded(id=self.plan.id, node_id=dest.node_id, state=state, error=error))

    def fail_dest(self, dest: PlanDestination, why: str) -> None:
        if self.alive.pop(dest.node_id, None) is None:
            return
        self.ended(dest, "failed", why)
        self.abort(dest)

    def abort(self, dest: PlanDestination) -> None:
        """Drop a destination's copy on its node. Submitted, not waited for: `settle_aborts` waits for
        them all at once, so copies failing together (a host cut off, a chain's nodes that do not answer,
        a failed read) do not wait for each other's nodes, nor do the other destinations' chunks."""
        others = [self.node(d) for d in self.alive.values() if d.node_id != dest.node_id]
        done = self.agents.get(self.node(dest)).abort_sink.remote(self.sink(dest))
        self.aborts.append(_Abort(dest, done, [*others, self.source_node]))

    def settle_aborts(self) -> None:
        """Wait for every abort submitted (`abort`), all within one `ABORT_TIMEOUT`; the temporary file of
        a copy whose node did not answer is removed through another node of its host. Before `Ended`: no
        partial copy is left once the transfer says it is over."""
        aborts, self.aborts = self.aborts, []
        if not aborts:
            return
        outcomes = gather({i: a.done for i, a in enumerate(aborts)}, ABORT_TIMEOUT)
        lost = [a for i, a in enumerate(aborts) if isinstance(outcomes[i], Exception)]
        log.info("transfer %s: %d aborted copies settled together, %d through another node of their host",
                 self.plan.id, len(aborts), len(lost),
                 extra={"aborted": [a.dest.node_id for a in aborts],
                        "unanswered": [a.dest.node_id for a in lost]})
        for a in lost:  # its node is gone (or hung): its agent is not asked again
            self.agents.forget(self.node(a.dest))
        self._remove_orphans(lost)

    def _remove_orphans(self, lost: list[_Abort]) -> None:
        """Remove the temp files of ``lost``'s copies through another live node on each one's host (the
        same machine), all at once."""
        gone = {self.node(a.dest) for a in lost}
        asked: dict[str, Any] = {}
        for a in lost:
            helper = self.agents.same_host(self.node(a.dest), [n for n in a.helpers if n not in gone])
            if helper is not None:
                path = f"{a.dest.dir}/{temp_name(self.plan.id, self.plan.token)}"
                asked[path] = helper.remove_temp.remote(path)
        for path, outcome in gather(asked, ABORT_TIMEOUT).items():
            if isinstance(outcome, Exception):
                log.warning("could not remove %s: %s", path, reason(outcome))


@dataclass
class _Abort:
    """A failed or cancelled copy's abort, submitted (`_Run.abort`) and not yet settled."""

    dest: PlanDestination
    done: Any  # the ObjectRef of its agent's `NodeAgent.abort_sink`
    helpers: list[str]  # the nodes live when it was aborted: another on its host can remove its temp file



def run_transfer(plan: Plan, agents: Agents, emit: Emit, cancelled: threading.Event) -> None:
    """Run ``plan``; report through ``emit`` (`Started`, `Progress`, `DestinationEnded`, and last `Ended`).
    Never raises."""
    # An empty Ray node id in a plan means the node this driver is attached to, on this machine: where
    # chunks read here enter Ray (and a helper on this host), and where a relay copy is written.
    run = _Run(plan, agents, emit, cancelled, ray.get_runtime_context().get_node_id())
    reader: AgentReader | HereReader | None = None
    try:
        if isinstance(plan.input, LocalFile | GatewayFile):
            reader = HereReader(plan.input)
        else:
            reader = AgentReader(agents.get(run.source_node), plan.id, plan.input)
        state, sha, error = _run(run, reader)
    except Exception as e:  # anything unexpected fails the transfer with a reason, never the driver
        log.exception("transfer %s failed", plan.id)
        state, sha, error = "failed", None, reason(e)
        for dest in list(run.alive.values()):
            run.fail_dest(dest, error)
    if reader is not None:
        try:
            reader.close()  # if still open
        except (RayError, GetTimeoutError, OSError):
            pass
    try:
        run.settle_aborts()
    except Exception:  # the outcome stands; a copy left behind is swept by the next transfer into its folder
        log.exception("transfer %s: settling its aborted copies failed", plan.id)
    emit(Ended(id=plan.id, state=state, sha256=sha, error=error, bytes_read=run.bytes_read))


def _run(run: _Run, reader: AgentReader | HereReader) -> Outcome:
    plan = run.plan
    here = isinstance(reader, HereReader)
    status = run.agents.ready([run.source_node] + [run.node(d) for d in plan.dests], plan.node_timeout)
    if not here and status[run.source_node] is not None:
        why = f"source node: {status[run.source_node]}"
        for dest in plan.dests:
            run.ended(dest, "failed", why)
        return "failed", None, why
    # numpy chunks with xxh3 only if every end has both; else every node takes the plain chunks
    ends = [run.node(d) for d in plan.dests if status.get(run.node(d)) is None]
    fast = all(run.agents.fast.get(n, False) for n in ends) and (
        FAST if here else run.agents.fast.get(run.source_node, False))
    try:
        run.size = reader.open(plan.expected_sha, fast)
    except (RayError, TransferError, OSError) as e:
        why = reason(e)
        for dest in plan.dests:
            run.ended(dest, "failed", why)
        return "failed", None, why
    run.emit(Started(id=plan.id, bytes_total=run.size))
    _open_sinks(run, status)
    if run.alive and plan.chain and len(run.alive) > 1:
        chain.stream(run, reader)  # each destination feeds the next
    elif run.alive:
        _stream(run, reader)  # a star: every destination pulls from the source
    if run.cancelled.is_set():
        return _cancel(run)
    if not run.alive:
        return "failed", None, "every destination failed"
    read = reader.close()
    run.bytes_read = read["bytes"] if read else 0
    if read is None or run.bytes_read != run.size:
        return _fail_all(run, f"read {run.bytes_read} bytes of {run.size}")
    if plan.expected_sha and read["sha256"] != plan.expected_sha:
        return _fail_all(run, "source changed since upload (sha256 differs)")
    _finish(run, read["sha256"])
    return "completed", read["sha256"], None


def _open_sinks(run: _Run, status: dict[str, str | None]) -> None:
    plan, refs = run.plan, {}
    for dest in plan.dests:
        if status.get(run.node(dest)) is not None:
            run.ended(dest, "failed", f"node unavailable: {status[run.node(dest)]}")
            continue
        spec = SinkSpec(dir=dest.dir, file_name=plan.file_name, transfer_id=plan.id, token=plan.token,
                        overwrite=plan.overwrite, retry=plan.retry, idle_timeout=idle_timeout(plan))
        refs[dest.node_id] = (dest, run.agents.get(run.node(dest)).open_sink.remote(run.sink(dest), spec))
    for node_id, (dest, ref) in refs.items():
        try:
            ray.get(ref)
        except RayError as e:
            run.ended(dest, "failed", reason(e))
            continue
        run.alive[node_id] = dest
        run.written[node_id] = 0


def _stream(run: _Run, reader: AgentReader | HereReader) -> None:
    plan, size, step = run.plan, run.size, run.plan.chunk_bytes
    window: deque[tuple[Any, dict[str, tuple[PlanDestination, Any]]]] = deque()
    pacer, sizer = Pacer(plan, run.cancelled, run.emit, run.written), Window(plan, plan.inflight)
    for index, offset in enumerate(range(0, size, step)):
        if run.cancelled.is_set() or not run.alive:
            break
        data, digest = reader.read(index, min(step, size - offset))
        writes = {node_id: (dest, run.agents.get(run.node(dest)).write.remote(run.sink(dest), index, data,
                                                                               digest))
                  for node_id, dest in run.alive.items()}
        window.append((digest, writes))
        while len(window) >= sizer.size():  # within the pull timeout at the slowest one's rate
            _await_chunk(run, *window.popleft())
            sizer.settled(step)
        pacer.sent(offset + step)
    while window:
        _await_chunk(run, *window.popleft())
    pacer.report()


def _await_chunk(run: _Run, digest: Any, writes: dict[str, tuple[PlanDestination, Any]]) -> None:
    """Wait for one chunk's writes, up to `pacing.chunk_deadline`: a failed read fails everyone, a
    failed write its destination, and so does one that has not answered by then."""
    deadline = chunk_deadline(run.plan)
    try:
        if not isinstance(digest, str):  # read by an agent (read here: already done)
            ray.get(digest, timeout=deadline)
    except (RayError, GetTimeoutError) as e:
        why = f"reading the source failed: {reason(e)}"
        for dest in list(run.alive.values()):
            run.fail_dest(dest, why)
        return
    live = {node_id: w for node_id, w in writes.items() if node_id in run.alive}
    if not live:
        return
    ready, _ = ray.wait([ref for _, ref in live.values()], num_returns=len(live), timeout=deadline)
    for node_id, (dest, ref) in live.items():
        if ref not in ready:
            log.warning("transfer %s: %s silent for %.0f s", run.plan.id, node_id, deadline)
            run.fail_dest(dest, NOT_ANSWERED)
            continue
        try:
            run.written[node_id] = int(ray.get(ref))
        except RayError as e:
            run.fail_dest(dest, reason(e))


def _finish(run: _Run, sha: str) -> None:
    """The source's sha256 to every destination; one that does not answer within the plan's
    ``node_timeout`` (a final fsync can take a while) fails with `pacing.NOT_ANSWERED`."""
    refs = {node_id: (dest, run.agents.get(run.node(dest)).finish.remote(run.sink(dest), sha))
            for node_id, dest in run.alive.items()}
    ready, _ = ray.wait([ref for _, ref in refs.values()], num_returns=len(refs),
                        timeout=max(run.plan.node_timeout, chunk_deadline(run.plan)))
    for node_id, (dest, ref) in refs.items():
        try:
            if ref not in ready:
                raise GetTimeoutError(NOT_ANSWERED)
            placed = ray.get(ref)
        except (RayError, GetTimeoutError) as e:
            run.fail_dest(dest, reason(e))
            continue
        run.alive.pop(node_id, None)
        run.emit(DestinationEnded(id=run.plan.id, node_id=node_id, state="completed", path=placed["path"],
                                  sha256=placed["sha256"], bytes_done=placed["bytes"]))


def _fail_all(run: _Run, why: str) -> Outcome:
    for dest in list(run.alive.values()):
        run.fail_dest(dest, why)
    return "failed", None, why


def _cancel(run: _Run) -> Outcome:
    dests = list(run.alive.values())
    for dest in dests:
        run.abort(dest)
    run.alive.clear()
    run.settle_aborts()
    for dest in dests:
        run.ended(dest, "cancelled")
    return "cancelled", None, "cancelled"
