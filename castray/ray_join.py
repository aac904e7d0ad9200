"""``castray transfer --join-ray HOST:PORT[,HOST:PORT...]``: make this host a node of each of these Ray
clusters before the transfer worker starts.

The transfer worker drives each cluster with ``ray.init(address=<gcs>)`` (a driver process per cluster),
and Ray connects a driver only through a raylet of that cluster on the driver's own host. In a container
of its own (docker compose, ``--scale transfer=3``), or for clusters on other machines, there is none, so
the worker first joins each cluster as a node with no CPUs (one raylet per cluster, each in a temp dir of
its own), and leaves them all on exit.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator

from castray import local_ray
from castray.errors import JoinError
from castray.settings import JoinSettings


@contextlib.contextmanager
def joined() -> Iterator[list[local_ray.RayNode]]:
    """Join every cluster named by ``CASTRAY_JOIN_RAY`` for the duration of the block (none if unset).

    If one cannot be joined, the ones joined already are left before `JoinError` is raised."""
    nodes: list[local_ray.RayNode] = []
    temps: list[str] = []
    try:
        for address in JoinSettings().join_ray:
            temps.append(tempfile.mkdtemp(prefix="castray-ray-"))  # short: Ray's socket paths live under it
            try:
                node = local_ray.join_cluster(address, temps[-1])
            except (OSError, RuntimeError, ValueError) as exc:
                raise JoinError(f"could not join the Ray cluster at {address}: {exc}") from None
            nodes.append(node)
            # Logging is set up by the service, after this: say it plainly.
            print(f"castray transfer: joined the Ray cluster at {address} as node {node.node_id}",
                  file=sys.stderr)
        yield nodes
    finally:
        for node in reversed(nodes):
            leave(node)
        for temp in temps:
            shutil.rmtree(temp, ignore_errors=True)


def leave(node: local_ray.RayNode, grace: float = 8.0) -> None:
    """SIGTERM ``ray start --block``, which stops its node so the cluster marks it DEAD at once (a
    killed node is noticed only after ~15 s of missed health checks); SIGKILL what remains after
    ``grace``."""
    import psutil

    group: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        group = [psutil.Process(node.pid), *psutil.Process(node.pid).children(recursive=True)]
    with contextlib.suppress(ProcessLookupError):
        node.process.send_signal(signal.SIGTERM)
    psutil.wait_procs(group, timeout=grace)  # the raylet too: killing it now would look like a crash
    node.stop()
