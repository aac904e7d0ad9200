"""CastRay's transfer driver (``python -m castray.transfer.driver``) run on a host of a network lab, fed
plans as the transfer service feeds it (JSON lines of `castray.transfer.protocol`), for the tests and the
benchmark of broadcasts across hosts (`tests/test_netlab_broadcast.py`, `bench/broadcast.py`).

It runs on a lab host, not on this machine, for the reason `tests/test_netlab_transfers.py` gives: a Ray
driver attaches to a raylet it finds among the machine's processes; on the head's host that raylet is its
own, as on a real host.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from castray import local_ray
from castray.transfer.protocol import (
    DestinationEnded,
    DriverEvent,
    Ended,
    GeneratedFile,
    Plan,
    PlanDestination,
    Ready,
    Run,
    decode_event,
    encode,
)
from tests.support import netlab

REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
# A dead node known to its head within a few seconds (health checks every second), so its copies are soon
# known lost.
FAST_DEATH = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "1000",
              "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3"}


class LabDriver:
    """One driver process on ``host`` of ``lab``, attached to the cluster of ``head``; `close` it."""

    def __init__(self, lab: netlab.Lab, host: netlab.Host, head: local_ray.RayNode, log: Path) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CASTRAY_") and k != "RAY_ADDRESS"}
        with open(log, "wb") as err:
            self.proc = lab.popen(host, [sys.executable, "-m", "castray.transfer.driver", "--address",
                                         head.gcs_address, "--log-level", "INFO"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=environ,
                                  cwd=REPO)
        self.log = log
        first = self._next()
        if not isinstance(first, Ready):
            self.close()
            raise RuntimeError(f"the driver did not start: {first}; log {log}")
        self.ready = first

    def _out(self) -> tuple[IO[bytes], IO[bytes]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        return self.proc.stdin, self.proc.stdout

    def _next(self) -> DriverEvent:
        line = self._out()[1].readline()
        if not line:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the driver exited ({self.proc.poll()}): {tail}")
        return decode_event(line)

    def run(self, plan: Plan, on_event: Callable[[DriverEvent], None] | None = None) -> list[DriverEvent]:
        """Run ``plan`` to its end (blocking); every event it reported, ``on_event`` called on each."""
        stdin = self._out()[0]
        stdin.write(encode(Run(plan=plan)))
        stdin.flush()
        events: list[DriverEvent] = []
        while True:
            event = self._next()
            events.append(event)
            if on_event is not None:
                on_event(event)
            if isinstance(event, Ended) and event.id == plan.id:
                return events

    def close(self) -> None:
        """Its stdin closed, it exits at once (with the actors it owns); killed if it does not."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class DriverLab:
    """A lab of 4 hosts: a Ray head on h1, a node on each of h2-h4, and CastRay's driver on h1."""

    lab: netlab.Lab
    nodes: list[local_ray.RayNode]  # h1 (the head), h2, h3, h4
    driver: LabDriver  # on h1


@contextmanager
def driver_lab(work: Path) -> Iterator[DriverLab]:
    """A `DriverLab` (the driver's log in ``work``), torn down on the way out, also on failure."""
    with netlab.running(4) as made:
        head = made.start_head(made.hosts[0], env=FAST_DEATH)
        nodes = [head] + [made.start_worker(h, head) for h in made.hosts[1:]]
        driver = LabDriver(made, made.hosts[0], head, work / "driver.log")
        try:
            yield DriverLab(made, nodes, driver)
        finally:
            driver.close()


def broadcast_plan(lab: DriverLab, work: Path, size: int, **fields: Any) -> Plan:
    """A generated file of ``size`` bytes on h1 to h2, h3, h4 (in that order), each into a folder of its own
    under ``work``; 4 MiB chunks, 4 in flight; ``fields`` set the plan's others (``id``, ``direct``, ...)."""
    dests = [PlanDestination(node_id=f"h{i}", ray_node_id=str(node.node_id),
                             dir=str(work / "inbox" / f"h{i}"))
             for i, node in enumerate(lab.nodes[1:], 2)]
    source = GeneratedFile(path=str(work / "src" / "source.bin"), size=size)
    return Plan(**{"id": "bc", "token": "t1", "input": source, "source_ray_node": str(lab.nodes[0].node_id),
                   "dests": dests, "file_name": "copy.bin", "chunk_bytes": 4 * MiB, "inflight": 4,
                   "progress_interval": 0.1, **fields})


def outcomes(events: list[DriverEvent]) -> tuple[Ended, dict[str, DestinationEnded]]:
    """A run's `Ended`, and each destination's `DestinationEnded` by its node id."""
    [ended] = [e for e in events if isinstance(e, Ended)]
    return ended, {e.node_id: e for e in events if isinstance(e, DestinationEnded)}
