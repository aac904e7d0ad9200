"""The service's side of the per-cluster drivers: one ``castray.transfer.driver`` child process per Ray
cluster (GCS address), started on first use, talked to in the JSON lines of `castray.transfer.protocol`,
restarted if it died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from pydantic import ValidationError

from castray.shared.address_policy import AddressPolicy
from castray.shared.errors import AddressNotAllowed
from castray.shared.hosts import host_of
from castray.shared.lifecycle import python_module_command
from castray.shared.log import without_ids
from castray.transfer.errors import DriverError
from castray.transfer.protocol import (
    Cancel,
    DriverEvent,
    Ended,
    Fatal,
    Plan,
    Ready,
    Run,
    decode_event,
    encode,
)

log = logging.getLogger(__name__)
_LINE_LIMIT = 16 * 1024 * 1024


def driver_command(address: str, log_level: str, *, log_json: bool = False, instance: str | None = None
                   ) -> list[str]:
    """The driver's argv: ``python -P -m castray.transfer.driver`` (``-P``: see python_module_command). It
    logs as its service does (JSON lines or text), naming the service's ``instance``."""
    logs = ["--log-level", log_level, *(["--log-json"] if log_json else []),
            *(["--instance", instance] if instance else [])]
    return python_module_command("castray.transfer.driver", "--address", address, *logs)


class DriverProcess:
    """One driver child process, connected to one cluster."""

    def __init__(self, address: str, *, start_timeout: float = 90.0, log_level: str = "WARNING",
                 log_json: bool = False, instance: str | None = None) -> None:
        self.address = address
        self.start_timeout = start_timeout
        self.log_level, self.log_json, self.instance = log_level, log_json, instance
        self.proc: asyncio.subprocess.Process | None = None
        self._queues: dict[str, asyncio.Queue[DriverEvent]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[Ready | Fatal] | None = None
        self._write_lock = asyncio.Lock()
        self.ray_node_id: str | None = None  # the cluster's node on this machine, which the driver joined

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and self._reader is not None \
            and not self._reader.done()

    async def start(self) -> None:
        """Start the process and wait until it is connected to Ray (`DriverError` if it cannot)."""
        self._ready = asyncio.get_running_loop().create_future()
        self.proc = await asyncio.create_subprocess_exec(
            *driver_command(self.address, self.log_level, log_json=self.log_json, instance=self.instance),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=_LINE_LIMIT)
        # It serves every transfer on this cluster, not only the one whose job started it.
        self._reader = asyncio.create_task(self._read(), name=f"driver-{self.address}", context=without_ids())
        try:
            hello = await asyncio.wait_for(asyncio.shield(self._ready), self.start_timeout)
        except TimeoutError:
            await self.close()
            raise DriverError(f"no connection to Ray at {self.address} within {self.start_timeout:.0f} s") \
                from None
        if isinstance(hello, Fatal):
            await self.close()
            raise DriverError(hello.error or f"cannot connect to Ray at {self.address}")
        self.ray_node_id = hello.ray_node_id or None
        log.info("driver for %s ready (pid %s)", self.address, self.proc.pid)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                try:
                    event = decode_event(line)
                except ValidationError:
                    log.warning("driver %s: bad line %r", self.address, line[:200])
                    continue
                if isinstance(event, Ready | Fatal):
                    if self._ready is not None and not self._ready.done():
                        self._ready.set_result(event)
                    continue
                queue = self._queues.get(event.id)
                if queue is not None:
                    queue.put_nowait(event)
        finally:
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(Fatal(error=f"driver for {self.address} exited"))
            for tid, queue in self._queues.items():  # every transfer it ran ends with it
                queue.put_nowait(Ended(id=tid, state="failed", error="transfer driver exited"))

    async def _send(self, command: Run | Cancel) -> None:
        if self.proc is None or self.proc.stdin is None:
            raise DriverError("driver not started")
        async with self._write_lock:
            self.proc.stdin.write(encode(command))
            await self.proc.stdin.drain()

    async def run(self, plan: Plan) -> AsyncIterator[DriverEvent]:
        """Run ``plan``; yields the driver's events for it, ending with `Ended`."""
        queue: asyncio.Queue[DriverEvent] = asyncio.Queue()
        self._queues[plan.id] = queue
        try:
            if not self.alive:
                raise DriverError("transfer driver exited")
            await self._send(Run(plan=plan))
            while True:
                event = await queue.get()
                yield event
                if isinstance(event, Ended):
                    return
        finally:
            self._queues.pop(plan.id, None)

    async def cancel(self, transfer_id: str) -> None:
        with contextlib.suppress(DriverError, ConnectionError, RuntimeError):
            await self._send(Cancel(id=transfer_id))

    async def close(self) -> None:
        """Stop the process: closing its stdin ends it; kill it if it lingers."""
        proc = self.proc
        if proc is not None and proc.returncode is None:
            if proc.stdin is not None:
                with contextlib.suppress(Exception):
                    proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, 2)


class Drivers:
    """Driver processes by GCS address; only for addresses the policy allows (Ray's protocol trusts its
    peers: a GCS named by an untrusted dashboard is never connected to)."""

    def __init__(self, *, policy: AddressPolicy, start_timeout: float = 90.0, log_level: str = "WARNING",
                 log_json: bool = False, instance: str | None = None) -> None:
        self.policy = policy
        self.start_timeout, self.log_level = start_timeout, log_level
        self.log_json, self.instance = log_json, instance
        self._drivers: dict[str, DriverProcess] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, address: str) -> DriverProcess:
        """The live driver for ``address``, started (or restarted) if needed; `DriverError` (from
        `AddressNotAllowed`) for an address outside the allow-list."""
        try:
            ips = await self.policy.check(host_of(address))
        except AddressNotAllowed as e:
            raise DriverError(f"refusing to connect to Ray at {address}: {e.message}") from e
        target = _pinned(address, ips)
        lock = self._locks.setdefault(address, asyncio.Lock())
        async with lock:
            driver = self._drivers.get(address)
            if driver is not None and driver.alive:
                return driver
            if driver is not None:
                await driver.close()
            driver = DriverProcess(target, start_timeout=self.start_timeout, log_level=self.log_level,
                                   log_json=self.log_json, instance=self.instance)
            await driver.start()
            self._drivers[address] = driver
            return driver

    async def close(self) -> None:
        drivers, self._drivers = list(self._drivers.values()), {}
        await asyncio.gather(*(d.close() for d in drivers), return_exceptions=True)


def _pinned(address: str, ips: list[str]) -> str:
    """``address`` with its host replaced by the address the allow-list checked, when it is a name: Ray
    would resolve the name again, and a name may point elsewhere by then."""
    host, port = host_of(address), address.rsplit(":", 1)[-1]
    if host in ips:
        return address
    return f"[{ips[0]}]:{port}" if ":" in ips[0] else f"{ips[0]}:{port}"
