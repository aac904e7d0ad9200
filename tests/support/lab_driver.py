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
from collections.abc import Callable
from pathlib import Path
from typing import IO

from castray import local_ray
from castray.transfer.protocol import DriverEvent, Ended, Plan, Ready, Run, decode_event, encode
from tests.support import netlab

REPO = Path(__file__).resolve().parents[2]


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
