"""Transfers across clusters, through the whole service: ``python bench/relay.py [--size 512MiB]``.

Ray moves data only inside one cluster, so a copy to a node of another cluster is relayed through the
transfer worker's machine (``castray.transfer.job``): the source's cluster writes a verified copy there,
then the other cluster sends it on. This bench measures what that costs, against the same service's
unicast inside one cluster and against ``cp``:
- two Ray clusters on this machine: A and B, each a head and a worker, free ports, own temp dirs;
- ``castray up --no-ray`` (a subprocess: discovery pointed at both, registry, transfer worker, gateway),
  own Redis namespace;
- one upload of a random file (through ``castray.client``, as every call here), then per round: ``cp`` +
  fsync of the file; the upload to A's worker (unicast inside A); the upload to B's worker (relayed).
  Each transfer is timed from ``POST /api/transfers`` to ``completed`` in ``GET /api/transfers/{id}``
  (polled every 20 ms), and its sha256 is checked against the upload's.
The first transfer to each cluster (its driver and node agents starting) is not counted. Prints figures;
asserts nothing. Stops everything it started, also on Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.live import redis_url, start_up, stop_up  # noqa: E402
from bench.transfer import MB, bench_cp, make_source  # noqa: E402
from castray import local_ray  # noqa: E402
from castray.client import AsyncClient, ClientError  # noqa: E402
from castray.shared.sizes import format_size, parse_size  # noqa: E402
from castray.shared.transfers import (  # noqa: E402
    GenerateSource,
    GenerateSpec,
    TransferRecord,
    TransferRequest,
    UploadSource,
)
from tests.support.namespace import drop_namespace  # noqa: E402
from tests.support.ray_nodes import start_worker  # noqa: E402


async def view_ids(api: AsyncClient, nodes: list[local_ray.RayNode]) -> list[str]:
    """The view's node ids of these Ray nodes, once all of them are in the view and alive."""
    end = time.monotonic() + 120
    while time.monotonic() < end:
        with contextlib.suppress(ClientError):
            alive = {n.ray_node_id: n.id for n in await api.nodes(state="ALIVE")}
            if all(str(node.node_id) in alive for node in nodes):
                return [alive[str(node.node_id)] for node in nodes]
        await asyncio.sleep(0.2)
    raise TimeoutError("castray up did not show every node within 120 s")


async def transfer(api: AsyncClient, source: UploadSource | GenerateSource, target: str,
                   name: str) -> tuple[float, TransferRecord]:
    """One unicast, timed from the request to ``completed`` (or any end); (seconds, final record)."""
    t0 = time.perf_counter()
    queued = await api.create_transfer(TransferRequest(source=source, mode="unicast", targets=[target],
                                                       file_name=name))
    record = await api.wait(queued.id, interval=0.02)
    return time.perf_counter() - t0, record


async def measure(base: str, src: Path, size: int, work: Path, a: list[local_ray.RayNode],
                  b: list[local_ray.RayNode], rounds: int) -> None:
    async with AsyncClient(base, token="") as api:
        _, a_worker, _, b_worker = await view_ids(api, [*a, *b])
        up = await api.upload(src)
        source = UploadSource(upload_id=up.upload_id)
        for target in (a_worker, b_worker):  # drivers and agents start: not counted
            warm = GenerateSource(generate=GenerateSpec(size="1MiB"))
            await transfer(api, warm, target, f"warm-{target}.bin")
        runs: dict[str, list[float]] = {"cp": [], "inside": [], "relayed": []}
        ok = True
        for r in range(rounds):
            runs["cp"].append(await asyncio.to_thread(bench_cp, src, work))
            for label, target in (("inside", a_worker), ("relayed", b_worker)):
                took, record = await transfer(api, source, target, f"{label}-{r}.bin")
                (dest,) = record.destinations
                ok = ok and record.state == "completed" and dest.sha256 == up.sha256
                runs[label].append(took)
                if dest.path:
                    await asyncio.to_thread(Path(dest.path).unlink, missing_ok=True)
    cp_rate = size / min(runs["cp"]) / MB
    inside = size / min(runs["inside"]) / MB
    relayed = size / min(runs["relayed"]) / MB
    print(f"file {format_size(size)}; best of {rounds} rounds; each transfer from its request to completed")
    print(f"  cp + fsync, same disk                  {min(runs['cp']):6.2f} s {cp_rate:7.1f} MB/s   (runs: "
          f"{', '.join(f'{t:.2f}' for t in runs['cp'])} s)")
    print(f"  unicast inside cluster A               {min(runs['inside']):6.2f} s {inside:7.1f} MB/s  "
          f"{inside / cp_rate:.2f}x cp")
    print(f"  unicast A -> B, relayed here           {min(runs['relayed']):6.2f} s {relayed:7.1f} MB/s  "
          f"{relayed / cp_rate:.2f}x cp  {relayed / inside:.2f}x inside A   verified: {ok}")
    print("  (relayed: A's head reads the upload, A writes a verified copy on its node beside the transfer "
          "worker, B's node there sends it to B's worker)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="512MiB", help="file size (default 512MiB)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each figure; the best is kept")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="castray-bench-relay-"))
    namespace = f"bench-relay-{uuid.uuid4().hex[:8]}"
    nodes: list[local_ray.RayNode] = []
    up: subprocess.Popen[bytes] | None = None
    try:
        src, size = work / "source.bin", parse_size(args.size)
        make_source(src, size)
        a_head = local_ray.start_head(tempfile.mkdtemp(prefix="castray-ray-a-"), num_cpus=1,
                                      object_store_memory=256 * 1024**2, die_with_parent=True)
        nodes.append(a_head)
        nodes.append(start_worker(a_head, object_store_memory=256 * 1024**2))
        b_head = local_ray.start_head(tempfile.mkdtemp(prefix="castray-ray-b-"), num_cpus=1,
                                      object_store_memory=256 * 1024**2, die_with_parent=True)
        nodes.append(b_head)
        nodes.append(start_worker(b_head, object_store_memory=256 * 1024**2))
        up, port = start_up([a_head, b_head], work, namespace)
        asyncio.run(measure(f"http://127.0.0.1:{port}", src, size, work, nodes[:2], nodes[2:], args.rounds))
    finally:
        if up is not None:
            stop_up(up)
        for node in reversed(nodes):
            node.stop()
        drop_namespace(redis_url(), namespace)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
