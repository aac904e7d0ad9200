"""Broadcast across hosts, CastRay's chain against Ray's star: ``sudo python bench/broadcast.py``.

In a network lab (`tests/support/netlab.py`, root and iproute2 needed): a Ray head on h1 and a node on each
of h2-h7, every link shaped (tbf, both ends). CastRay's transfer driver runs on h1 (`LabDriver`) and sends
a file of h1 (a node's file whose sha256 is known, as an upload's is) to N = 1, 3 and 6 other hosts:

- **chain**: the destinations feed each other (`castray.transfer.chain`, the default);
- **star**: every destination pulls each chunk from h1 (``Plan.chain=False``: Ray's plain object-manager
  broadcast, CastRay's path before the chain), in the same run, on the same links;
- **direct** (``--ways chain,direct``): the same chain over direct TCP connections between the agents
  (``Plan.direct``, `castray.transfer.direct`). Its unicast is the same as the chain's (one destination
  takes the Ray path), so its ratio is to the same unicast.

For each: the wall time from the plan sent to its end, and its ratio to the unicast (N = 1) at that rate;
the bytes each host sent (its interface's counter, MB); the CPU seconds of every process in the lab (Ray,
agents, driver) per GiB delivered (N copies). Every copy is verified (sha256) by the pipeline itself; a
row whose transfer did not complete says so. Copies land in /dev/shm: the lab's hosts share this machine's
one disk, which real hosts do not. Prints a table; asserts nothing. Figures are noisy on a shared machine:
the load average is printed with them.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from castray.shared.sizes import format_size, parse_size  # noqa: E402
from castray.transfer.protocol import (  # noqa: E402
    DestinationEnded,
    Ended,
    NodeFile,
    Plan,
    PlanDestination,
)
from tests.support import netlab  # noqa: E402
from tests.support.lab_driver import LabDriver  # noqa: E402

MB = 1_000_000
GiB = 1024**3


@dataclass
class Row:
    rate: str
    n: int
    way: str
    took: float
    sent: list[int]  # bytes each host sent, h1 first
    cpu: float  # CPU seconds in the lab
    size: int
    ok: bool
    note: str = ""


def lab_cpu(lab: netlab.Lab) -> dict[int, float]:
    """CPU seconds (user + system) of every process in the lab's namespaces, by pid."""
    out: dict[int, float] = {}
    for host in lab.hosts:
        for pid in netlab.ip("netns", "pids", host.netns, check=False).stdout.split():
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(int(pid)).cpu_times()
                out[int(pid)] = t.user + t.system + t.children_user + t.children_system
    return out


def make_file(path: Path, size: int) -> str:
    """A random file of ``size`` bytes; its sha256."""
    sha, left = hashlib.sha256(), size
    with open(path, "wb") as f:
        while left:
            block = os.urandom(min(left, 8 * 1024 * 1024))
            sha.update(block)
            f.write(block)
            left -= len(block)
    return sha.hexdigest()


class Bench:
    def __init__(self, lab: netlab.Lab, driver: LabDriver, node_ids: list[str], work: Path, chunk: int,
                 inflight: int) -> None:
        self.lab, self.driver, self.node_ids, self.work = lab, driver, node_ids, work
        self.chunk, self.inflight, self.count = chunk, inflight, 0

    def run(self, rate: str, source: Path, sha: str, n: int, way: str) -> Row:
        self.count += 1
        inbox = Path(tempfile.mkdtemp(prefix="castray-bench-inbox-", dir="/dev/shm"))
        dests = [PlanDestination(node_id=f"h{i}", ray_node_id=self.node_ids[i - 1], dir=str(inbox / f"h{i}"))
                 for i in range(2, n + 2)]
        read = NodeFile(root=str(source.parent), path=source.name)
        plan = Plan(id=f"b{self.count}", token="bench", input=read, source_ray_node=self.node_ids[0],
                    dests=dests, file_name="copy.bin", expected_sha=sha,
                    chunk_bytes=self.chunk, inflight=self.inflight, chain=way != "star",
                    direct=way == "direct", progress_interval=5.0)
        size = source.stat().st_size
        self.quiet()
        before, cpu0 = [self.lab.counters(h)[0] for h in self.lab.hosts], lab_cpu(self.lab)
        t0 = time.perf_counter()
        events = self.driver.run(plan)
        took = time.perf_counter() - t0
        cpu1 = lab_cpu(self.lab)
        time.sleep(1.0)  # what Ray still sends after the end (duplicate chunks) counts too
        sent = [self.lab.counters(h)[0] - b for h, b in zip(self.lab.hosts, before, strict=True)]
        shutil.rmtree(inbox, ignore_errors=True)
        ended = next(e for e in events if isinstance(e, Ended))
        done = [e for e in events if isinstance(e, DestinationEnded) and e.state == "completed"]
        ok = ended.state == "completed" and len(done) == n and all(e.sha256 == sha for e in done)
        cpu = sum(t - cpu0.get(pid, 0.0) for pid, t in cpu1.items())
        return Row(rate, n, way, took, sent, cpu, size, ok,
                   "" if ok else f"{ended.state}: {ended.error}")


    def quiet(self, deadline: float = 120.0) -> None:
        """Wait until the lab's links are idle: Ray may still be re-sending chunks of the run before
        (its pull timeout), which must not count in this one."""
        end, last = time.monotonic() + deadline, -1
        while time.monotonic() < end:
            total = sum(self.lab.counters(h)[0] for h in self.lab.hosts)
            if 0 <= total - last < 200_000:
                return
            last = total
            time.sleep(1.0)


def table(rows: list[Row], hosts: int) -> str:
    unicast = {r.rate: r.took for r in rows if r.n == 1}
    head = ["rate", "N", "way", "size", "time s", "x unicast", "CPU s/GiB"]
    head += [f"h{i} sent MB" for i in range(1, hosts + 1)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ratio = f"{r.took / unicast[r.rate]:.2f}" if r.rate in unicast else "-"
        cells = [r.rate, str(r.n), r.way, format_size(r.size), f"{r.took:.1f}", ratio,
                 f"{r.cpu / (r.n * r.size / GiB):.1f}"] + [f"{s / MB:.0f}" for s in r.sent]
        lines.append("| " + " | ".join(cells) + " |" + (f" {r.note}" if r.note else ""))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", default="400mbit", help="the first rate (default 400mbit)")
    parser.add_argument("--fast-size", default="128MiB", help="file size at the first rate")
    parser.add_argument("--fast-n", default="1,3,6",
                        help="destination counts at the first rate (empty: skip it)")
    parser.add_argument("--slow", default="100mbit", help="the second rate, for larger N (default 100mbit)")
    parser.add_argument("--slow-size", default="128MiB", help="file size at the second rate")
    parser.add_argument("--slow-n", default="1,3,6",
                        help="destination counts at the second rate (empty: skip it)")
    parser.add_argument("--chunk", default="4MiB", help="chunk size (default 4MiB)")
    parser.add_argument("--inflight", type=int, default=8, help="chunks in flight (default 8)")
    parser.add_argument("--ways", default="chain,star",
                        help="ways of broadcasting to compare, of chain, direct, star (default chain,star)")
    parser.add_argument("--no-star", action="store_true", help="skip Ray's star")
    args = parser.parse_args()
    ways = [w for w in args.ways.split(",") if w and not (args.no_star and w == "star")]
    if not ways or any(w not in ("chain", "direct", "star") for w in ways):
        parser.error(f"--ways: of chain, direct, star, not {args.ways!r}")
    rates = [(rate, parse_size(size), [int(n) for n in counts.split(",") if n])
             for rate, size, counts in ((args.fast, args.fast_size, args.fast_n),
                                        (args.slow, args.slow_size, args.slow_n)) if counts]
    hosts = 1 + max(max(ns) for _, _, ns in rates)
    work = Path(tempfile.mkdtemp(prefix="castray-bench-bc-"))
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
          f"chunk {args.chunk}, {args.inflight} in flight; {hosts} hosts; ways {','.join(ways)}")
    rows: list[Row] = []
    try:
        with netlab.running(hosts) as lab:
            t0 = time.perf_counter()
            head = lab.start_head(lab.hosts[0])
            nodes = [head] + [lab.start_worker(h, head) for h in lab.hosts[1:]]
            driver = LabDriver(lab, lab.hosts[0], head, work / "driver.log")
            print(f"  (lab of {hosts} Ray nodes and the driver up in {time.perf_counter() - t0:.0f} s)")
            try:
                bench = Bench(lab, driver, [str(n.node_id) for n in nodes], work, parse_size(args.chunk),
                              args.inflight)
                for rate, size, counts in rates:
                    _at_rate(bench, lab, rate, size, counts, ways, work, rows)
            finally:
                driver.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end")
    print(table(rows, hosts))


def _at_rate(bench: Bench, lab: netlab.Lab, rate: str, size: int, counts: list[int], ways: list[str],
             work: Path, rows: list[Row]) -> None:
    for host in lab.hosts:
        lab.shape(host, netlab.Shape(rate=rate))
    source = work / f"source-{rate}.bin"
    sha = make_file(source, size)
    for warm in ways:  # every agent started, and the first object transfers (slower) done
        bench.run(rate, source, sha, len(lab.hosts) - 1, warm)
    for n in counts:
        for way in (ways if n > 1 else ["chain"]):
            row = bench.run(rate, source, sha, n, way)
            rows.append(row)
            print(f"  {rate} N={n} {row.way}: {row.took:.1f} s, h1 sent {row.sent[0] / MB:.0f} MB"
                  f"{'' if row.ok else ' NOT COMPLETED ' + row.note} (load {os.getloadavg()[0]:.1f})",
                  flush=True)
    source.unlink()


if __name__ == "__main__":
    main()
