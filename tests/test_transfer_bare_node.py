"""A node of someone else's cluster: Ray is there, CastRay, numpy and xxhash are not (Ray needs none of them).

The node is a real Ray worker joined to the session head, whose Python hides those modules (a
``sitecustomize`` on its ``PYTHONPATH``, which every process of the node inherits). The transfer driver
ships the agent's code with its ``runtime_env`` (`castray.transfer.shipping`), and the agent falls back to
plain chunks: the node is a destination and a source, and every copy is verified on disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from castray import local_ray
from castray.shared.names import Names
from castray.transfer.worker import TransferWorker
from tests.support import transfer_env as env
from tests.support.ray_nodes import start_worker

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parent.parent

_SITECUSTOMIZE = '''
"""This node has Ray, but no numpy, no xxhash, and no CastRay of its own (only what a driver ships)."""
import importlib.machinery
import sys

INSTALLED = {installed!r}


class _Bare:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in ("numpy", "xxhash"):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        if top != "castray":
            return None
        # Ray puts the driver's own directories on its workers' path too: on another machine they
        # would not exist, so they are skipped here.
        search = path if path is not None else [p for p in sys.path if not p.startswith(INSTALLED)]
        spec = importlib.machinery.PathFinder.find_spec(name, search)
        if spec is None or (spec.origin or "").startswith(INSTALLED):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return spec


sys.meta_path.insert(0, _Bare)
'''

_PROBE = '''
import json, sys
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

ray.init(address=sys.argv[1], log_to_driver=False)

@ray.remote(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(sys.argv[2], soft=False))
def probe():
    out = {}
    for name in ("numpy", "xxhash", "castray"):
        try:
            __import__(name)
            out[name] = True
        except ImportError:
            out[name] = False
    return out

print(json.dumps(ray.get(probe.remote())))
'''


@pytest.fixture(scope="module")
def bare_node(ray_head: local_ray.RayNode, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[local_ray.RayNode]:
    site = tmp_path_factory.mktemp("bare-site")
    (site / "sitecustomize.py").write_text(textwrap.dedent(_SITECUSTOMIZE.format(installed=str(REPO))))
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    node = start_worker(ray_head, object_store_memory=300 * MiB, env={"PYTHONPATH": path})
    try:
        yield node
    finally:
        node.stop()


def test_the_bare_node_really_lacks_them(ray_head: local_ray.RayNode, bare_node: local_ray.RayNode) -> None:
    """Ray's own worker on that node, started without our runtime_env, imports none of the three."""
    out = subprocess.run([sys.executable, "-c", _PROBE, ray_head.gcs_address, str(bare_node.node_id)],
                         capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"numpy": False, "xxhash": False,
                                                               "castray": False}


async def test_a_bare_node_receives_and_sends_verified_copies(
    ray_head: local_ray.RayNode, bare_node: local_ray.RayNode, transfer_worker: TransferWorker,
    redis_client: aioredis.Redis, names: Names, tmp_path: Path,
) -> None:
    view = await env.register_view(redis_client, names, ray_head)
    head, bare = view[str(ray_head.node_id)], view[str(bare_node.node_id)]

    # An upload (its sha256 known) from the head to the bare node.
    upload_id, want = await env.random_upload(redis_client, names, tmp_path / "data/uploads/to-bare.bin",
                                              40 * MiB + 123)  # an unaligned tail too
    rec = await env.queue(redis_client, names, source={"upload_id": upload_id}, targets=[bare.id],
                          file_name="to-bare.bin", mode="unicast", cluster_id=head.cluster_id)
    rec = await env.wait_record(redis_client, names, rec.id, env.done, timeout=180)
    assert rec.state == "completed", (rec.error, [d.error for d in rec.destinations])
    (dest,) = rec.destinations
    assert dest.state == "completed" and dest.sha256 == want
    assert dest.path == str(transfer_worker.settings.inbox_root() / bare.id / "to-bare.bin")
    assert env.sha256_file(dest.path) == want
    assert env.temp_files(Path(dest.path).parent) == []

    # A file on the bare node (hashed there as it is read) to the head and to the bare node itself.
    files_root = transfer_worker.settings.files_root_dir()
    files_root.mkdir(parents=True)
    (files_root / "from-bare.bin").write_bytes(os.urandom(24 * MiB))
    want = env.sha256_file(files_root / "from-bare.bin")
    rec = await env.queue(redis_client, names, source={"node_id": bare.id, "path": "from-bare.bin"},
                          targets=[head.id, bare.id], file_name="from-bare.bin", mode="multicast",
                          cluster_id=head.cluster_id)
    rec = await env.wait_record(redis_client, names, rec.id, env.done, timeout=180)
    assert rec.state == "completed", (rec.error, [d.error for d in rec.destinations])
    assert rec.sha256 == want
    for d in rec.destinations:
        assert d.state == "completed" and d.sha256 == want
        assert env.sha256_file(d.path) == want
