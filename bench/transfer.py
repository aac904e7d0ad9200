"""Transfer throughput against ``cp``, on this machine: ``python bench/transfer.py [--size 1GiB]``.

In one run, with the same durability on both sides (every copy fsync'd before the clock stops):
1. ``cp`` of the file on the same disk, then fsync of the copy;
2. our unicast of it from one Ray node to another (separate raylets and object stores: the bytes go
   through Ray's object transfer, no same-host shortcut), the file being an upload (its sha256 known from
   the upload's record, as the service plans it: the source is not hashed again);
3. our broadcast of it to 3 nodes (MB/s counted over all copies; the source is read once);
4. for reference, the unicast of a node's own file (sha256 not known: the source hashes it as it reads).
It starts and stops its own Ray nodes, and prints; it asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from castray import local_ray  # noqa: E402
from castray.shared.sizes import format_size, parse_size  # noqa: E402

MB = 1_000_000


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def bench_cp(src: Path, work: Path) -> float:
    dst = work / "cp-copy.bin"
    t0 = time.perf_counter()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    _fsync(dst)
    took = time.perf_counter() - t0
    dst.unlink()
    return took


def make_source(path: Path, size: int) -> str:
    """``size`` random bytes (numpy's PRNG: fast), fsync'd; returns the sha256."""
    import numpy as np

    rng, sha, left = np.random.default_rng(), hashlib.sha256(), size
    with open(path, "wb") as f:
        while left:
            block = rng.bytes(min(left, 64 << 20))
            sha.update(block)
            f.write(block)
            left -= len(block)
        f.flush()
        os.fsync(f.fileno())
    return sha.hexdigest()


def cpu_seconds(nodes: list[local_ray.RayNode]) -> float:
    """CPU time used so far by every process of these Ray nodes, and by this process."""
    import psutil

    total = sum(psutil.Process().cpu_times()[:2])
    for node in nodes:
        try:
            procs = psutil.Process(node.pid).children(recursive=True)
        except psutil.Error:
            continue
        for p in procs:
            try:
                total += sum(p.cpu_times()[:2])
            except psutil.Error:
                pass
    return total


def run_plan(plan: Any, agents: Any, nodes: list[local_ray.RayNode]
             ) -> tuple[float, float, dict[str, Any], list[dict[str, Any]]]:
    from castray.transfer.pipeline import run_transfer

    events: list[dict[str, Any]] = []
    cpu0, t0 = cpu_seconds(nodes), time.perf_counter()
    run_transfer(plan, agents, events.append, threading.Event())
    took, cpu = time.perf_counter() - t0, cpu_seconds(nodes) - cpu0
    done = next(e for e in events if e["ev"] == "done")
    return took, cpu, done, [e for e in events if e["ev"] == "dest"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1GiB", help="file size (default 1GiB)")
    parser.add_argument("--chunk", default="16MiB", help="chunk size (default 16MiB)")
    parser.add_argument("--inflight", type=int, default=4, help="chunks in flight (default 4)")
    parser.add_argument("--dir", default=None, help="work directory (default: a temp dir under /tmp)")
    args = parser.parse_args()
    size, chunk = parse_size(args.size), parse_size(args.chunk)
    work = Path(tempfile.mkdtemp(prefix="castray-bench-", dir=args.dir))
    nodes: list[local_ray.RayNode] = []
    try:
        _run(work, size, chunk, args.inflight, nodes)
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(work, ignore_errors=True)


def _run(work: Path, size: int, chunk: int, inflight: int, nodes: list[local_ray.RayNode]) -> None:
    src = work / "source.bin"
    print(f"file: {format_size(size)} random, chunk {format_size(chunk)}, {inflight} in flight; dir {work}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other work shares them)")
    sha = make_source(src, size)

    cp_times = [bench_cp(src, work) for _ in range(2)]
    cp_s = min(cp_times)
    cp_rate = size / cp_s / MB
    print(f"cp + fsync, same disk:        {cp_s:6.2f} s  {cp_rate:7.1f} MB/s   (runs: "
          f"{', '.join(f'{t:.2f}' for t in cp_times)} s; best taken)")

    store = max(256 * 1024 * 1024, chunk * inflight * 4)
    t0 = time.perf_counter()
    ray_tmp = tempfile.mkdtemp(prefix="castray-bench-ray-")
    head = local_ray.start_head(ray_tmp, num_cpus=1, object_store_memory=store)
    nodes.append(head)
    for _ in range(3):
        nodes.append(local_ray.start_worker(head, object_store_memory=store))
    print(f"  (4 Ray nodes up in {time.perf_counter() - t0:.1f} s)")

    import ray

    from castray.transfer.pipeline import Agents, DestPlan, Plan

    ray.init(address=head.gcs_address, log_to_driver=False, logging_level="WARNING")
    gc.freeze()  # as the transfer driver does (driver.py)
    agents = Agents()
    t0 = time.perf_counter()
    agents.ready([str(n.node_id) for n in nodes], 120)
    print(f"  (node agents started in {time.perf_counter() - t0:.1f} s, once per driver: not counted)")

    def plan(name: str, targets: list[local_ray.RayNode], known: bool = True) -> Plan:
        return Plan(id=name, source={"kind": "path", "path": str(src)}, source_ray_node=str(head.node_id),
                    expected_sha=sha if known else None,
                    dests=[DestPlan(node_id=f"node{i}", ray_node_id=str(n.node_id),
                                    dir=str(work / f"inbox{i}")) for i, n in enumerate(targets, 1)],
                    file_name=f"{name}.bin", chunk_bytes=chunk, inflight=inflight, token="bench")

    warm = plan("warmup", nodes[1:4])  # first object transfers between the nodes are slower
    warm.source = {"kind": "generate", "size": 64 << 20, "path": str(work / "warm.bin")}
    run_plan(warm, agents, nodes)
    results = {}
    runs = (("unicast", nodes[1:2], True), ("broadcast", nodes[1:4], True), ("node-file", nodes[1:2], False))
    for name, targets, known in runs:
        took, cpu, done, dests = run_plan(plan(name, targets, known), agents, nodes)
        ok = done["state"] == "finished" and all(d["state"] == "completed" and d["sha256"] == sha
                                                 for d in dests) and len(dests) == len(targets)
        copies = len(targets)
        rate = size * copies / took / MB
        results[name] = rate
        nodes_txt = f"{copies} node{'s' if copies > 1 else ' '}"
        if not known:
            print("  for reference, a node's file (sha256 not known: hashed at the source too):")
        print(f"ours, {name:9s} to {nodes_txt}: {took:6.2f} s  {rate:7.1f} MB/s "
              f"over all copies  ({rate / cp_rate:.2f}x cp)   verified: {ok}; source read "
              f"{done.get('bytes_read', 0) / size:.2f} time(s)")
        per_gib = cpu / (size * copies / 2**30)
        print(f"      CPU used by all Ray processes: {cpu:.1f} s ({per_gib:.1f} CPU-s per GiB delivered); "
              f"with every core free that alone bounds the rate at "
              f"{size * copies / (cpu / (os.cpu_count() or 1)) / MB:.0f} MB/s")
        for d in dests:
            Path(d["path"]).unlink(missing_ok=True)
    print("targets: unicast >= 0.70x cp: {}; broadcast >= 0.70x cp: {}".format(
        "met" if results["unicast"] >= 0.7 * cp_rate else "NOT met",
        "met" if results["broadcast"] >= 0.7 * cp_rate else "NOT met"))
    original = 8192 / 0.010 / MB
    print(f"original CastRay ceiling: 8 KiB per 10 ms = {original:.2f} MB/s, files up to 100 MiB "
          f"({format_size(size)} would take {size / (original * MB) / 60:.0f} min if it were allowed)")
    ray.shutdown()


if __name__ == "__main__":
    main()
