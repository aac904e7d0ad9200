"""Transfer throughput against ``cp``, on this machine: ``python bench/transfer.py [--size 1GiB]``.

In one run, with the same durability on both sides (every copy fsync'd before the clock stops), each
figure the best of ``--rounds`` runs taken in turns (this machine's speed drifts):
1. ``cp`` of the file on the same disk, then fsync of the copy;
2. our unicast of it from one Ray node to another (separate raylets and object stores: the bytes go
   through Ray's object transfer, no same-host shortcut), the file being an upload (its sha256 known from
   the upload's record, as the service plans it: the source is not hashed again, and it is read by the
   driver, which puts its chunks into the head's object store);
3. our broadcast of it to 3 nodes (MB/s counted over all copies; the source is read once);
4. for reference, the unicast of a node's own file (sha256 not known: the source hashes it as it reads);
5. the ceiling through Ray's data path: Ray alone moving the same chunks between the same nodes, with
   nothing read, hashed or written (``bench_ray_only``); and the same with the work no transfer can skip
   (the source reads the file, the destination computes sha256; no disk).
It starts and stops its own Ray nodes, and prints; it asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import os
import shutil
import statistics
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
from castray.transfer.protocol import (  # noqa: E402
    DestinationEnded,
    DriverEvent,
    Ended,
    GeneratedFile,
    Input,
    LocalFile,
    NodeFile,
    Plan,
    PlanDestination,
)
from tests.support.ray_nodes import start_worker  # noqa: E402

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


def cpu_times(nodes: list[local_ray.RayNode]) -> dict[int, float]:
    """CPU time used so far by each process of these Ray nodes, and by this process (pid -> CPU-s)."""
    import psutil

    procs = [psutil.Process()]
    for node in nodes:
        with contextlib.suppress(psutil.Error):
            procs += psutil.Process(node.pid).children(recursive=True)
    out = {}
    for p in procs:
        with contextlib.suppress(psutil.Error):
            out[p.pid] = sum(p.cpu_times()[:2])
    return out


def cpu_used(before: dict[int, float], nodes: list[local_ray.RayNode]) -> float:
    """CPU-s used since ``before`` by the processes alive now (one that exited meanwhile is not counted,
    rather than subtracting all it ever used)."""
    return sum(t - before.get(pid, 0.0) for pid, t in cpu_times(nodes).items())


class _RayOnlySource:
    """Hands out the same chunk again and again (Ray's own transfer, nothing else), or with ``path``
    reads the file's chunks in turn (the work every transfer must do at its source)."""

    def __init__(self, chunk: int, path: str | None = None) -> None:
        import numpy as np

        self.chunk = chunk
        self.buf = np.random.default_rng().integers(0, 255, chunk, dtype=np.uint8)
        self.file = open(path, "rb", buffering=0) if path else None  # noqa: SIM115 - lives with the actor

    def read(self, index: int) -> Any:
        if self.file is None:
            return self.buf
        import numpy as np

        buf = np.empty(self.chunk, dtype=np.uint8)
        n = self.file.readinto(buf.data.cast("B"))
        return buf[:n]


class _RayOnlySink:
    """Takes chunks and drops them, or with ``hashed`` feeds them to a sha256 first (the work every
    destination must do)."""

    def __init__(self, hashed: bool = False) -> None:
        self.sha = hashlib.sha256() if hashed else None

    def write(self, index: int, data: Any) -> int:
        if self.sha is not None:
            self.sha.update(data)
        return len(data)


def bench_ray_only(head: local_ray.RayNode, targets: list[local_ray.RayNode], size: int, chunk: int,
                   inflight: int, nodes: list[local_ray.RayNode], src: Path | None = None
                   ) -> tuple[float, float]:
    """The ceiling through Ray's data path: the same chunks, window and nodes as ours, moved by two bare
    actors (nothing read, hashed or written). With ``src``, the bare actors also do the work no transfer
    can skip: the source reads the file, each destination computes sha256 (still no disk write, no
    ordering, no per-chunk check). Returns (seconds, CPU-s)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    def pinned(node: local_ray.RayNode) -> dict[str, Any]:
        strategy = NodeAffinitySchedulingStrategy(str(node.node_id), soft=False)
        return {"num_cpus": 0, "scheduling_strategy": strategy}

    source = ray.remote(_RayOnlySource).options(**pinned(head)).remote(chunk, str(src) if src else None)
    sinks = [ray.remote(_RayOnlySink).options(**pinned(n)).remote(src is not None) for n in targets]
    ray.get([source.__ray_ready__.remote()] + [s.write.remote(0, b"") for s in sinks])
    window: list[Any] = []
    cpu0, t0 = cpu_times(nodes), time.perf_counter()
    for index in range(-(-size // chunk)):
        data = source.read.remote(index)
        window.append([s.write.remote(index, data) for s in sinks])
        if len(window) >= inflight:
            ray.get(window.pop(0))
    for refs in window:
        ray.get(refs)
    took, cpu = time.perf_counter() - t0, cpu_used(cpu0, nodes)
    for actor in [source, *sinks]:
        ray.kill(actor)
    return took, cpu


def machine_counters() -> list[int]:
    """The machine's CPU time so far, by kind (``/proc/stat``: user nice system idle iowait irq softirq
    steal); empty where there is no ``/proc/stat``."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return []


def waiting_share(before: list[int]) -> tuple[float, float]:
    """Shares of the machine's CPU time since ``before`` spent in iowait (nothing to run while the disk
    works) and stolen (a VM's host running something else): a disk slowed by load shows here."""
    after = machine_counters()
    delta = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(delta)
    if len(delta) < 8 or total <= 0:
        return 0.0, 0.0
    return delta[4] / total, delta[7] / total


Best = dict[str, tuple[float, float, bool, tuple[float, float]]]


def _keep(best: Best, name: str, took: float, cpu: float, ok: bool, waits: tuple[float, float]) -> None:
    """Keep the fastest run; a run that failed verification marks the figure unverified."""
    prev = best.get(name)
    ok = ok and (prev is None or prev[2])
    best[name] = (took, cpu, ok, waits) if prev is None or took < prev[0] else (*prev[:2], ok, prev[3])


def run_plan(plan: Plan, agents: Any, nodes: list[local_ray.RayNode]
             ) -> tuple[float, float, Ended, list[DestinationEnded]]:
    from castray.transfer.pipeline import run_transfer

    events: list[DriverEvent] = []
    cpu0, t0 = cpu_times(nodes), time.perf_counter()
    run_transfer(plan, agents, events.append, threading.Event())
    took, cpu = time.perf_counter() - t0, cpu_used(cpu0, nodes)
    done = next(e for e in events if isinstance(e, Ended))
    return took, cpu, done, [e for e in events if isinstance(e, DestinationEnded)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1GiB", help="file size (default 1GiB)")
    parser.add_argument("--chunk", default="16MiB", help="chunk size (default 16MiB)")
    parser.add_argument("--inflight", type=int, default=4, help="chunks in flight (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each figure; the best is kept")
    parser.add_argument("--dir", default=None, help="work directory (default: a temp dir under /tmp)")
    args = parser.parse_args()
    size, chunk = parse_size(args.size), parse_size(args.chunk)
    work = Path(tempfile.mkdtemp(prefix="castray-bench-", dir=args.dir))
    nodes: list[local_ray.RayNode] = []
    try:
        _run(work, size, chunk, args.inflight, args.rounds, nodes)
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(work, ignore_errors=True)


def _run(work: Path, size: int, chunk: int, inflight: int, rounds: int,
         nodes: list[local_ray.RayNode]) -> None:
    src = work / "source.bin"
    print(f"file: {format_size(size)} random, chunk {format_size(chunk)}, {inflight} in flight; dir {work}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other work shares them)")
    sha = make_source(src, size)

    store = max(256 * 1024 * 1024, chunk * inflight * 4)
    t0 = time.perf_counter()
    ray_tmp = tempfile.mkdtemp(prefix="castray-bench-ray-")
    head = local_ray.start_head(ray_tmp, num_cpus=1, object_store_memory=store)
    nodes.append(head)
    for _ in range(3):
        nodes.append(start_worker(head, object_store_memory=store))
    print(f"  (4 Ray nodes up in {time.perf_counter() - t0:.1f} s)")

    import ray

    from castray.transfer.pipeline import Agents
    from castray.transfer.shipping import agent_runtime_env

    # As the transfer driver connects (driver.py): the agent's code shipped to the nodes.
    ray.init(address=head.gcs_address, log_to_driver=False, logging_level="WARNING",
             runtime_env=agent_runtime_env(work / "agent-code"))
    gc.freeze()  # as the transfer driver does (driver.py)
    agents = Agents()
    t0 = time.perf_counter()
    agents.ready([str(n.node_id) for n in nodes], 120)
    print(f"  (node agents started in {time.perf_counter() - t0:.1f} s, once per driver: not counted)")

    def plan(name: str, targets: list[local_ray.RayNode], known: bool = True) -> Plan:
        # An upload (known sha256) is read here, by the driver, attached to the head, as the service does;
        # a node's own file by the head's agent (the work directory as its files root).
        read: Input = (LocalFile(root=str(work), path=src.name) if known
                       else NodeFile(root=str(work), path=src.name))
        return Plan(id=name, input=read, source_ray_node=str(head.node_id),
                    expected_sha=sha if known else None,
                    dests=[PlanDestination(node_id=f"node{i}", ray_node_id=str(n.node_id),
                                           dir=str(work / f"inbox{i}")) for i, n in enumerate(targets, 1)],
                    file_name=f"{name}.bin", chunk_bytes=chunk, inflight=inflight, token="bench")

    warm = plan("warmup", nodes[1:4])  # first object transfers between the nodes are slower
    warm = warm.model_copy(update={"input": GeneratedFile(size=64 << 20, path=str(work / "warm.bin"))})
    run_plan(warm, agents, nodes)
    # This machine's speed drifts by 2x from minute to minute: every figure is the best of `rounds`
    # runs, and the runs of each round follow each other, so each ratio compares neighbours.
    best: Best = {}
    runs = (("unicast", nodes[1:2], True), ("broadcast", nodes[1:4], True), ("node-file", nodes[1:2], False))
    cp_times: list[float] = []
    paired: dict[str, list[float]] = {"unicast": [], "broadcast": []}  # each round's own time
    cp_waits: list[tuple[float, float]] = []
    for round_ in range(rounds):
        counters = machine_counters()
        cp_times.append(bench_cp(src, work))
        cp_waits.append(waiting_share(counters))
        for label, targets, with_work in (("ray-only unicast", nodes[1:2], None),
                                          ("ray+work unicast", nodes[1:2], src),
                                          ("ray-only broadcast", nodes[1:4], None)):
            counters = machine_counters()
            took, cpu = bench_ray_only(head, targets, size, chunk, inflight, nodes, with_work)
            _keep(best, label, took, cpu, True, waiting_share(counters))
        for name, targets, known in runs:
            counters = machine_counters()
            took, cpu, done, dests = run_plan(plan(f"{name}{round_}", targets, known), agents, nodes)
            ok = (done.state == "completed" and len(dests) == len(targets)
                  and all(d.state == "completed" and d.sha256 == sha for d in dests)
                  and done.bytes_read == size)
            _keep(best, name, took, cpu, ok, waiting_share(counters))
            if name in paired:
                paired[name].append(took)
            for d in dests:
                if d.path:
                    Path(d.path).unlink(missing_ok=True)
    copies = {"unicast": 1, "broadcast": 3, "node-file": 1, "ray-only unicast": 1, "ray+work unicast": 1,
              "ray-only broadcast": 3}
    cp_s = min(cp_times)
    cp_rate = size / cp_s / MB
    iowait, steal = cp_waits[cp_times.index(cp_s)]
    print(f"cp + fsync, same disk:  {cp_s:6.2f} s {cp_rate:7.1f} MB/s   (runs: "
          f"{', '.join(f'{t:.2f}' for t in cp_times)} s)  iowait {iowait:3.0%} steal {steal:3.0%}")
    rates = {name: size * copies[name] / took / MB for name, (took, *_) in best.items()}
    print(f"best of {rounds} rounds; MB/s over all copies; CPU-s per GiB delivered, all Ray processes; "
          "the machine's CPU time in iowait and stolen by the host during the run")
    lines = (("Ray alone, unicast (ceiling)", "ray-only unicast"),
             ("Ray + file read + sha256, unicast (no disk)", "ray+work unicast"),
             ("ours, unicast", "unicast"),
             ("Ray alone, broadcast to 3 (ceiling)", "ray-only broadcast"),
             ("ours, broadcast to 3", "broadcast"),
             ("ours, node file, unicast (hashed at source)", "node-file"))
    for text, name in lines:
        took, cpu, ok, (iowait, steal) = best[name]
        ceiling = rates.get(f"ray-only {name}") if not name.startswith("ray-only") else None
        ceiling = rates["ray-only unicast"] if name == "ray+work unicast" else ceiling
        of_ray = f"  {rates[name] / ceiling:.2f}x Ray alone" if ceiling else ""
        verified = "" if name.startswith("ray") else f"  verified: {ok}, source read once: {ok}"
        print(f"  {text:44s} {took:6.2f} s {rates[name]:7.1f} MB/s  {rates[name] / cp_rate:.2f}x cp{of_ray}"
              f"  {cpu / (size * copies[name] / 2**30):4.1f} CPU-s/GiB"
              f"  iowait {iowait:3.0%} steal {steal:3.0%}{verified}")
    # cp's speed on these VMs depends on what ran just before it: 1.3 GB/s after writing the file or
    # another cp, 330-380 MB/s after one of our transfers (or Ray alone moving data, no disk), though the
    # source stays cached; the cause is not pinned down (README, Benchmarks). Our copies (direct I/O,
    # bound by CPU) hardly change. So each round is also compared with its own cp, run just before it.
    ratios: dict[str, list[float]] = {"unicast": [], "broadcast": []}
    for r, cp_t in enumerate(cp_times):
        cp_r = size / cp_t / MB
        uni, bro = size / paired["unicast"][r] / MB, 3 * size / paired["broadcast"][r] / MB
        ratios["unicast"].append(uni / cp_r)
        ratios["broadcast"].append(bro / cp_r)
        print(f"  round {r + 1}: cp {cp_r:6.1f} MB/s, unicast {uni:6.1f} MB/s ({uni / cp_r:.2f}x), "
              f"broadcast to 3 {bro:6.1f} MB/s ({bro / cp_r:.2f}x)")
    met = {name: sum(x >= 0.7 for x in xs) for name, xs in ratios.items()}
    print(f"targets, round against its own cp: unicast >= 0.70x in {met['unicast']} of {rounds} rounds "
          f"(median {statistics.median(ratios['unicast']):.2f}x); broadcast >= 0.70x in "
          f"{met['broadcast']} of {rounds} (median {statistics.median(ratios['broadcast']):.2f}x)")
    print("targets (best against best): unicast >= 0.70x cp: {}; broadcast >= 0.70x cp: {}".format(
        "met" if rates["unicast"] >= 0.7 * cp_rate else "NOT met",
        "met" if rates["broadcast"] >= 0.7 * cp_rate else "NOT met"))
    original = 8192 / 0.010 / MB
    print(f"original CastRay ceiling: 8 KiB per 10 ms = {original:.2f} MB/s, files up to 100 MiB "
          f"({format_size(size)} would take {size / (original * MB) / 60:.0f} min if it were allowed)")
    ray.shutdown()


if __name__ == "__main__":
    main()
