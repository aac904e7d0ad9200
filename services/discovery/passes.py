"""A discovery pass: gather candidates from every source, probe them concurrently, adopt the clusters.

Passes coalesce: a request arriving while a pass runs joins it (and, if it is explicit, makes that
pass re-add clusters that were disconnected). Probes have their own timeouts, so one hanging address
delays the pass by at most ``connect_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from castray.discovery import sources
from castray.discovery.errors import Unexpected
from castray.discovery.probe import Probe, Prober
from castray.discovery.settings import DiscoverySettings
from castray.discovery.sources import Candidate
from castray.discovery.tracker import Tracker
from castray.shared.errors import CodedError
from castray.shared.events import ClusterInfo

log = logging.getLogger(__name__)
# Adopted in this order: the local cluster first, so it is never first taken for an external one.
_SOURCE_ORDER = {"local": 0, "config": 1, "session-file": 2, "scan": 3}


def _rank(cand: Candidate) -> int:
    return _SOURCE_ORDER.get(cand.source, 9)


@dataclass
class PassResult:
    clusters: list[ClusterInfo] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # address -> why it failed (config/local only)


class Discoverer:
    """Runs passes, one at a time, joined by whoever asks while one runs."""

    def __init__(self, *, settings: DiscoverySettings, prober: Prober, tracker: Tracker) -> None:
        self.settings = settings
        self.prober = prober
        self.tracker = tracker
        self.passes = 0
        self._task: asyncio.Task[PassResult] | None = None
        self._explicit = False
        self._open = False  # True while the running pass can still take an explicit joiner
        self._reported: dict[str, str] = {}
        # Clusters a previous run was connected to by hand: probed by the first pass only (see worker).
        self.remembered: list[Candidate] = []

    async def run_pass(self, *, explicit: bool = False) -> PassResult:
        """Run a pass now, or join the one running."""
        task = self._task
        if explicit and task is not None and not task.done() and not self._open:
            # Too late to make the running pass explicit: let it finish, then run one of our own.
            await asyncio.wait({task})
        if explicit:
            self._explicit = True
        if self._task is None or self._task.done():
            self._open = True
            self._task = asyncio.create_task(self._pass(), name="discovery-pass")
        return await asyncio.shield(self._task)

    async def _candidates(self) -> list[Candidate]:
        found = await asyncio.gather(
            sources.session_files(self.settings), sources.scan(self.settings, self.prober.policy)
        )
        out = sources.configured(self.settings) + found[0] + found[1] + self.remembered
        self.remembered = []
        return list(dict.fromkeys(out))

    async def _pass(self) -> PassResult:
        self.passes += 1
        candidates = await self._candidates()
        limit = asyncio.Semaphore(self.settings.scan_concurrency)

        async def probe(c: Candidate) -> Probe | CodedError:
            async with limit:
                try:
                    return await self.prober.probe(c.address, kind=c.kind)
                except CodedError as e:  # a ProbeError, or AddressNotAllowed
                    return e
                except Exception as e:  # a bug on one candidate must not abort the pass for the others
                    log.exception("probing %s failed unexpectedly", c.address)
                    return Unexpected(f"probe failed: {type(e).__name__}")

        outcomes = await asyncio.gather(*(probe(c) for c in candidates))
        explicit, self._explicit, self._open = self._explicit, False, False
        result = PassResult()
        groups: dict[str, tuple[Probe, list[Candidate]]] = {}
        for cand, outcome in sorted(zip(candidates, outcomes, strict=True), key=lambda co: _rank(co[0])):
            if isinstance(outcome, CodedError):
                self._report(cand, outcome, result)
                continue
            self._reported.pop(cand.address, None)
            # One cluster found several ways is adopted once, with every source and address.
            groups.setdefault(self.tracker.match(outcome), (outcome, []))[1].append(cand)
        for probe_result, cands in groups.values():
            cluster = await self.tracker.adopt(
                probe_result,
                sources=[c.source for c in cands],
                addresses=[c.address for c in cands],
                explicit=explicit,
            )
            if cluster is not None:
                result.clusters.append(cluster)
        result.clusters.sort(key=lambda c: c.first_seen)
        return result

    def _report(self, cand: Candidate, error: CodedError, result: PassResult) -> None:
        # Stale session files and closed scan ports fail all the time; configured addresses matter.
        if cand.source not in ("config", "local"):
            return
        result.errors[cand.address] = f"{error.code}: {error.message}"
        if self._reported.get(cand.address) != error.code:
            self._reported[cand.address] = error.code
            log.warning("configured address %s: %s", cand.address, error.message)

    async def run_periodically(self) -> None:
        while True:
            try:
                await self.run_pass()
            except Exception:  # a bug in one pass must not stop discovery
                log.exception("discovery pass failed")
            await asyncio.sleep(self.settings.scan_interval)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
