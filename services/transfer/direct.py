"""A broadcast chain over direct connections between node agents, Ray kept for placement, lifecycle,
failure and as the fallback (``Plan.direct``, which the service sets from ``CASTRAY_BROADCAST_DIRECT``,
true by default: bench/broadcast.py has it within 5 % of one link's time where the Ray chain takes
1.4-1.5x).

The Ray chain (`castray.transfer.chain`) stores and forwards each chunk through Ray's object manager, about
a second per hop for 4 MiB chunks on a 100mbit link. Here the bytes flow as a TCP stream down the same
order (`chain.chain_order`): the source's agent sends to the first
destination's agent, which forwards every piece to the next as it arrives, while it writes whole chunks
through the very path `NodeAgent.write` takes (ordered, digest-checked, watched for idleness): so the time
is one link's plus a chunk per hop, and the source sends each byte once (`castray.transfer.direct_hop`).

- **Set-up, through Ray only**: a secret of `direct_hop.SECRET_BYTES` random bytes per transfer, given to
  the agents as an argument of their calls. Each destination listens on its node's own address, an
  ephemeral port, for one peer that sends the secret first (`NodeAgent.direct_listen`); each connects to
  the next (`direct_connect`); then the source connects to the first and sends.
- **Limits**: a peer can send only the plan's chunks, in order, each exactly its length (never more than
  ``chunk_bytes``, never past the file's size), with a short digest; every read and drain has the plan's
  chunk deadline (`pacing.chunk_deadline`); file I/O runs in threads, as `write` does.
- **Progress**: the driver asks every hop where its copy stands (`direct_status`) every `POLL_S`, and
  reports `Progress` every ``progress_interval``.
- **End**: every copy is verified by the pipeline's finish (sha256), as for the Ray paths.
- **Fallback**: if the set-up fails (a port not reachable, a listen error), or a hop breaks or dies
  mid-stream, the direct chain is closed (what each hop has received is still written), the copies that
  still stand say where (`NodeAgent.rewind`: a node that does not answer fails with its reason), the
  source is read again from the first chunk one of them misses (`SourceFile.restart`), and the Ray chain
  re-issues to each copy only the chunks it misses. A copy whose own write failed fails with its reason; a
  hop silent for a chunk deadline fails as `pacing.NOT_ANSWERED`.
- Only for a source an agent reads on its node: a node's or a generated file (not a file this driver reads, an
  upload streamed from the gateway, which takes the Ray chain).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from castray.transfer.direct_hop import SECRET_BYTES, HopStatus, Limits, SendEnd
from castray.transfer.errors import TransferError
from castray.transfer.pacing import NOT_ANSWERED, Pacer, chunk_deadline, gather
from castray.transfer.reasons import reason
from castray.transfer.sources import AgentReader, HereReader

if TYPE_CHECKING:
    from castray.transfer.pipeline import _Run

log = logging.getLogger(__name__)
POLL_S = 0.1  # seconds between the driver's questions to the hops
LISTEN_S = 60.0  # seconds a hop listens for its upstream peer
CLOSE_TIMEOUT = 10.0  # seconds for the hops to close (the chunks they received still written)
REWIND_TIMEOUT = 30.0  # seconds for a copy to say where it stands, else it failed
STALL_DEADLINES = 2.0  # no byte written anywhere for this many chunk deadlines: the Ray chain takes over


@dataclass(frozen=True)
class Resume:
    """Where the copies stand when the Ray chain takes over: their next chunk, and their epoch."""

    stands: dict[str, int]
    epochs: dict[str, int]

    @property
    def first(self) -> int:
        return min(self.stands.values(), default=0)


Fallback = Callable[[Resume], None]


class DirectUnavailable(TransferError):
    """The direct chain could not be set up: the Ray chain runs instead."""


def usable(run: _Run, reader: AgentReader | HereReader) -> bool:
    """Can this transfer take the direct chain? Its source must be read by an agent on its node (which can
    read it again, for the fallback). A file this driver reads (an upload beside the service, a relay
    copy) takes the Ray chain: sent from a thread of the driver, its stream stalled after a chunk once in
    a CI run under load, the cause not found yet (the fallback completed every copy)."""
    return run.size > 0 and len(run.alive) >= 1 and isinstance(reader, AgentReader)



class _Direct:
    def __init__(self, run: _Run, reader: AgentReader | HereReader, order: list[str]) -> None:
        self.run, self.reader, self.order = run, reader, order
        self.secret = secrets.token_bytes(SECRET_BYTES)
        self.deadline = chunk_deadline(run.plan)
        self.limits = Limits(run.size, run.plan.chunk_bytes, self.deadline)
        self.send_ref: Any = None

    def agent(self, node_id: str) -> Any:
        return self.run.agents.get(self.run.node(self.run.alive[node_id]))

    def key(self, node_id: str) -> str:
        return self.run.sink(self.run.alive[node_id])

    def setup(self) -> None:
        """Listeners, connections down the chain, then the source's send (`DirectUnavailable`)."""
        plan, order = self.run.plan, self.order
        listening = gather({n: self.agent(n).direct_listen.remote(self.key(n), self.secret, self.run.size,
                                                                   plan.chunk_bytes, self.deadline, LISTEN_S)
                             for n in order}, plan.node_timeout)
        for node_id, got in listening.items():
            if isinstance(got, Exception):
                raise DirectUnavailable(f"{node_id} could not listen: {reason(got)}")
        addr = {n: (str(a[0]), int(a[1])) for n, a in listening.items()}
        connected = gather({n: self.agent(n).direct_connect.remote(self.key(n), *addr[nxt])
                             for n, nxt in zip(order, order[1:], strict=False)}, 2 * self.deadline)
        for node_id, got in connected.items():
            if isinstance(got, Exception):
                raise DirectUnavailable(f"{node_id} could not reach the next hop: {reason(got)}")
        host, port = addr[order[0]]
        assert isinstance(self.reader, AgentReader)  # `usable`
        self.send_ref = self.reader.agent.direct_send.remote(
            self.reader.key, host, port, self.secret, plan.chunk_bytes, self.deadline, plan.rate_limit)
        log.info("transfer %s: direct chain %s, source sends to %s:%d", plan.id, ",".join(order), host, port)

    def watch(self) -> bool:
        """Until every copy is written (True), or the stream broke somewhere (False); progress reported."""
        run = self.run
        pacer = Pacer(run.plan, run.cancelled, run.emit, run.written)
        moved, total = time.monotonic(), -1
        while run.alive and not run.cancelled.is_set():
            statuses = gather({n: self.agent(n).direct_status.remote(self.key(n)) for n in self.order
                                if n in run.alive}, self.deadline)
            broken = self._judge(statuses)
            sent = self._sent()
            if sent is not None and sent["error"] is not None:
                log.info("transfer %s: the source's send stopped: %s", run.plan.id, sent["error"])
                broken = True
            if not run.alive or all(s["state"] == "done" for n, s in statuses.items() if n in run.alive
                                    and not isinstance(s, Exception)) and not broken:
                return True
            if broken:
                return False
            now, written = time.monotonic(), sum(run.written.get(n, 0) for n in run.alive)
            if written != total:
                moved, total = now, written
            elif now - moved > STALL_DEADLINES * self.deadline:
                log.warning("transfer %s: direct chain stalled for %.0f s", run.plan.id, now - moved)
                return False
            if now - pacer.last >= run.plan.progress_interval:
                pacer.report()
            run.cancelled.wait(POLL_S)
        return True

    def _judge(self, statuses: dict[str, HopStatus | Exception]) -> bool:
        """Fail the copies that failed or went silent (the first silent one down the chain); True if the
        stream broke somewhere."""
        run, broken = self.run, False
        silent = [n for n in self.order if isinstance(statuses.get(n), GetTimeoutError)]
        for node_id in silent[:1]:
            log.warning("transfer %s: %s silent for %.0f s", run.plan.id, node_id, self.deadline)
            run.fail_dest(run.alive[node_id], NOT_ANSWERED)
        for node_id, status in statuses.items():
            if node_id in silent or node_id not in run.alive:
                broken = broken or node_id in silent
                continue
            if isinstance(status, Exception):
                run.fail_dest(run.alive[node_id], reason(status))
                broken = True
            elif status["state"] == "failed":
                run.fail_dest(run.alive[node_id], status["error"] or "write failed")
                broken = True
            else:
                run.written[node_id] = status["written"]
                if status["state"] == "broken" or status["forward"] is not None:
                    why = status["error"] or status["forward"]
                    log.info("transfer %s: %s: %s", run.plan.id, node_id, why)
                    broken = True
        return broken

    def _sent(self) -> SendEnd | None:
        """The source's send, once it ended (a failed read fails every copy)."""
        error: BaseException | None = None
        end: SendEnd | None = None
        if self.send_ref is not None:
            if not ray.wait([self.send_ref], timeout=0)[0]:
                return None
            try:
                end = ray.get(self.send_ref)
            except RayError as e:
                error = e
        if error is not None:
            why = f"reading the source failed: {reason(error)}"
            for dest in list(self.run.alive.values()):
                self.run.fail_dest(dest, why)
            return {"sent": 0, "error": why}
        return end

    def close(self) -> None:
        """End every hop and the source's send (the chunks the hops received are still written)."""
        run = self.run
        refs = {n: self.agent(n).direct_close.remote(self.key(n)) for n in self.order if n in run.alive}
        if isinstance(self.reader, AgentReader):
            refs["source"] = self.reader.agent.direct_close.remote(self.reader.key)
        for node_id, got in gather(refs, CLOSE_TIMEOUT).items():
            if isinstance(got, Exception):
                log.info("transfer %s: closing %s's direct hop: %s", run.plan.id, node_id, reason(got))

    def fall_back(self, fallback: Fallback) -> None:
        """The Ray chain takes over from where each live copy stands."""
        run = self.run
        asked = {n: self.agent(n).rewind.remote(self.key(n)) for n in self.order if n in run.alive}
        stands, epochs = {}, {}
        for node_id, got in gather(asked, REWIND_TIMEOUT).items():
            if isinstance(got, Exception):
                log.info("transfer %s: %s left the chain: %s", run.plan.id, node_id, reason(got))
                run.fail_dest(run.alive[node_id], reason(got))
                continue
            stands[node_id], epochs[node_id] = int(got["next"]), int(got["epoch"])
        if not run.alive:
            return
        resume = Resume(stands, epochs)
        offset = min(resume.first * run.plan.chunk_bytes, run.size)
        log.info("transfer %s: the Ray chain takes over from chunk %d (%s)", run.plan.id, resume.first,
                 ",".join(f"{n}:{i}" for n, i in stands.items()))
        try:
            if isinstance(self.reader, AgentReader):
                ray.get(self.reader.agent.rewind_source.remote(self.reader.key, resume.first, offset),
                        timeout=run.plan.node_timeout)
            else:
                assert self.reader.source is not None
                self.reader.source.restart(resume.first, offset)
        except (RayError, GetTimeoutError, TransferError, OSError) as e:
            why = f"reading the source failed: {reason(e)}"
            for dest in list(run.alive.values()):
                run.fail_dest(dest, why)
            return
        fallback(resume)


def stream(run: _Run, reader: AgentReader | HereReader, order: list[str], fallback: Fallback) -> None:
    """Stream the source down ``order`` over direct connections (blocking); whatever breaks, the copies
    still standing continue through ``fallback`` (the Ray chain) from where they stand."""
    direct = _Direct(run, reader, order)
    try:
        direct.setup()
    except DirectUnavailable as e:
        log.warning("transfer %s: no direct chain (%s): the Ray chain instead", run.plan.id, e)
        direct.close()
        direct.fall_back(fallback)
        return
    complete = direct.watch()
    direct.close()
    if complete or run.cancelled.is_set() or not run.alive:
        return
    direct.fall_back(fallback)
