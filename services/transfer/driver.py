"""The Ray driver of one cluster: ``python -m castray.transfer.driver --address <gcs>``.

Ray allows one ``ray.init`` per process, so the transfer service (asyncio, no Ray import) runs one of
these per cluster and talks to it in the JSON lines of `castray.transfer.protocol`: commands on stdin
(`Run` a `Plan`, `Cancel`), events on the original stdout (`Ready` or `Fatal`, then per plan `Started`,
`Progress`, `DestinationEnded` and last `Ended`). Anything else printed goes to stderr.

It lives exactly as long as its parent: stdin closing (the service exited or was killed) ends it at once,
and with it every actor it owns, so a transfer never goes on running for a replica that is gone.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from castray.shared.lifecycle import die_with_parent
from castray.shared.log import log_context, setup_logging
from castray.transfer.protocol import Cancel, DriverEvent, Fatal, Plan, Ready, Run, decode_command, encode


class _Channel:
    def __init__(self, out: TextIO) -> None:
        self.out, self.lock = out, threading.Lock()

    def send(self, event: DriverEvent) -> None:
        line = encode(event).decode()
        with self.lock:
            self.out.write(line)
            self.out.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="castray.transfer.driver")
    parser.add_argument("--address", required=True, help="GCS address of the cluster (host:port)")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--log-json", action="store_true", help="JSON lines, as the service's")
    parser.add_argument("--instance", help="the transfer service's instance (its lines name it)")
    args = parser.parse_args(argv)
    channel = _Channel(os.fdopen(os.dup(1), "w", buffering=1))
    os.dup2(2, 1)  # stray prints (Ray's, ours) must never corrupt the protocol
    dies_with_parent = die_with_parent(signal.SIGKILL)  # Linux; stdin EOF covers the rest
    if dies_with_parent is not None:
        dies_with_parent()
    setup_logging(args.log_level, json_lines=args.log_json, service="transfer-driver", instance=args.instance)
    try:
        import ray

        from castray.transfer.shipping import agent_runtime_env

        with tempfile.TemporaryDirectory(prefix="castray-agent-") as code:
            ray.init(address=args.address, log_to_driver=False, logging_level=logging.WARNING,
                     runtime_env=agent_runtime_env(Path(code)))
    except Exception as e:
        channel.send(Fatal(error=f"cannot connect to Ray at {args.address}: {e}"))
        return 1
    from castray.transfer.pipeline import Agents, run_transfer

    gc.freeze()  # start-up objects (Ray's, ~10^5) out of the collector's reach: cheaper full passes per chunk
    agents = Agents()
    cancels: dict[str, threading.Event] = {}
    channel.send(Ready(ray_version=ray.__version__, pid=os.getpid(),
                       ray_node_id=ray.get_runtime_context().get_node_id()))  # the node beside us: relays

    def run(plan: Plan, cancelled: threading.Event) -> None:  # a thread of its own: no ids inherited
        try:
            with log_context(transfer_id=plan.id):
                logging.getLogger(__name__).info("transfer %s: plan of %d destination(s) taken", plan.id,
                                                 len(plan.dests))
                run_transfer(plan, agents, channel.send, cancelled)
        finally:
            cancels.pop(plan.id, None)

    for line in sys.stdin:
        try:
            command = decode_command(line)
        except ValidationError as e:
            logging.getLogger(__name__).warning("bad command %r: %s", line[:200], e)
            continue
        if isinstance(command, Run):
            cancels[command.plan.id] = threading.Event()
            threading.Thread(target=run, args=(command.plan, cancels[command.plan.id]), daemon=True,
                             name=f"transfer-{command.plan.id}").start()
        elif isinstance(command, Cancel) and command.id in cancels:
            cancels[command.id].set()
    os._exit(0)  # our service is gone: so are we, at once (no graceful Ray shutdown to wait for)


if __name__ == "__main__":
    sys.exit(main())
