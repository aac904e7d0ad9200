"""Ray nodes only tests (and benches) start: workers joined to a test's head, and a head run through a
wrapper command. The product starts heads and joins with ``castray.local_ray``; these reuse its pieces."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

from castray import local_ray
from castray.local_ray import RayNode


def start_worker(
    head: RayNode,
    *,
    num_cpus: int = 1,
    object_store_memory: int = 200 * 1024 * 1024,
    labels: dict[str, str] | None = None,
    node_name: str | None = None,
    env: dict[str, str] | None = None,
    wait: float = 60.0,
    wrap: tuple[str, ...] = (),
    node_ip: str | None = None,
    temp_dir: str | None = None,
) -> RayNode:
    """Join a worker to ``head``; return once the head's dashboard lists it ALIVE.

    ``wrap`` runs its ``ray start`` inside another command that execs it (``ip netns exec`` for a host of
    a network lab, whose address is ``node_ip``); ``temp_dir`` defaults to the head's.
    """
    assert head.dashboard_port is not None
    before = {r["node_id"] for r in local_ray.list_nodes(head.dashboard_url)}
    lo, hi = local_ray.free_port_range()
    temp = temp_dir or head.temp_dir
    log_path = os.path.join(temp, f"castray-worker-{lo}.log")
    args = local_ray.start_args(temp, (lo, hi), head.gcs_address, num_cpus=num_cpus,
                                object_store_memory=object_store_memory, labels=labels, node_name=node_name,
                                node_ip=node_ip)
    node = RayNode(local_ray.launch([*wrap, *args], temp, log_path, env), temp, head.gcs_port, None, False,
                   log_path, host=head.host)
    try:
        node.node_id = local_ray.wait_listed(
            node, head.dashboard_url,
            lambda rows: [r for r in rows if r["node_id"] not in before and r["state"] == "ALIVE"], wait)
    except BaseException:
        node.stop()
        raise
    return node


def start_wrapped_head(temp_dir: str, wrap: list[str], *, num_cpus: int = 1,
                       object_store_memory: int = 200 * 1024 * 1024) -> RayNode:
    """A head whose ``ray start`` runs as the arguments of ``wrap``, e.g. ``unshare`` to give it a view of
    the filesystem of its own (``wrap`` must exec them, so that the head keeps its process id)."""
    args, ports = local_ray.head_command(temp_dir, num_cpus=num_cpus, object_store_memory=object_store_memory)
    return local_ray.run_head([*wrap, *args], temp_dir, ports)


@contextlib.contextmanager
def own_head(num_cpus: int = 1, env: dict[str, str] | None = None) -> Iterator[RayNode]:
    """A Ray head on free ports with a temp dir of its own, stopped (by process group) on leaving, even on
    failure: the one way a test fixture starts a cluster."""
    head = local_ray.start_head(tempfile.mkdtemp(prefix="castray-ray-"), num_cpus=num_cpus, env=env)
    try:
        yield head
    finally:
        head.stop()
