"""The client commands (``castray nodes``, ``send``, ``transfers``, ...): each talks to a gateway through
`castray.client`, at ``--url`` / ``CASTRAY_GATEWAY_URL`` with ``--token`` / ``CASTRAY_API_TOKEN``.

Each runs its own event loop (``asyncio.run``); the one question asked (Ctrl-C during ``send``: cancel?)
is asked after that loop has stopped, so no prompt ever blocks it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from castray import output, send
from castray.client import DEFAULT_URL, AsyncClient, Client, ClientError, NotFound, SnapshotMessage
from castray.shared.events import (
    NodeInfo,
    TransferCancelled,
    TransferCompleted,
    TransferEvent,
    TransferFailed,
    TransferProgress,
    TransferStarted,
)
from castray.shared.transfers import GenerateSource, GenerateSpec, TransferRequest, UploadSource

Command = Callable[[AsyncClient, argparse.Namespace], Awaitable[int]]
_EXAMPLES = {
    "nodes": "castray nodes --state ALIVE\n  castray nodes --cluster c1a2b3 --json | jq '.[].id'",
    "clusters": "castray clusters --json",
    "discover": "castray discover",
    "connect": "castray connect 10.0.0.5:8265",
    "disconnect": "castray disconnect 10.0.0.5:8265   # or no argument: every external cluster",
    "send": "castray send model.bin --broadcast\n"
            "  castray send --generate 256MiB --to NODE1,NODE2 --overwrite",
    "transfers": "castray transfers\n  castray transfers 3f2a... --watch",
    "cancel": "castray cancel 3f2a...",
    "uploads": "castray uploads --json",
}


def _client_parser(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help_text, description=help_text, epilog=f"example:\n  {_EXAMPLES[name]}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", metavar="URL", help=f"the gateway (CASTRAY_GATEWAY_URL; default {DEFAULT_URL})")
    p.add_argument("--token", metavar="TOKEN", help="its API token (CASTRAY_API_TOKEN)")
    p.add_argument("--json", action="store_true", help="print JSON, for scripts")
    return p


def add_parsers(sub: Any) -> None:
    """The client commands, on the ``castray`` command's subparsers."""
    p = _client_parser(sub, "nodes", "list the nodes of every cluster in the view")
    p.add_argument("--cluster", metavar="C", help="only this cluster's nodes (its id)")
    p.add_argument("--state", metavar="S", choices=("ALIVE", "DEAD", "UNREACHABLE"), type=str.upper,
                   help="only nodes in this state: ALIVE, DEAD or UNREACHABLE")
    _client_parser(sub, "clusters", "list the clusters in the view, with their node counts")
    _client_parser(sub, "discover", "run a discovery pass now and list what it found")
    p = _client_parser(sub, "connect", "watch the Ray cluster at ADDRESS (its dashboard)")
    p.add_argument("address", metavar="ADDRESS", help="host:port or http://host:port of its dashboard")
    p = _client_parser(sub, "disconnect", "stop watching an external cluster (or every one)")
    p.add_argument("cluster", metavar="CLUSTER", nargs="?", help="cluster id or address (default: all)")
    p = _client_parser(sub, "send", "send a file to nodes, with live progress; exit 0 only when every "
                       "destination verified")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("file", metavar="FILE", nargs="?", help="a file of this machine (uploaded first)")
    what.add_argument("--generate", metavar="SIZE", help="a generated file of this size instead (64MB, 1GiB)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", metavar="NODE[,NODE...]", help="node ids (or names, or unique id prefixes)")
    where.add_argument("--broadcast", action="store_true", help="every alive node of a cluster")
    p.add_argument("--cluster", metavar="C", help="with --broadcast: this cluster (default: the only one)")
    p.add_argument("--overwrite", action="store_true", help="replace a file of that name at a destination")
    p.add_argument("--name", metavar="NAME", help="the file's name at the destinations")
    p = _client_parser(sub, "transfers", "list transfers, or show one (--watch: follow it live)")
    p.add_argument("id", metavar="ID", nargs="?", help="one transfer")
    p.add_argument("--watch", action="store_true", help="with ID: follow it until it ends; without: a line "
                   "per transfer started or ended, until Ctrl-C")
    p.add_argument("--limit", type=int, default=20, help="how many (newest first; default 20)")
    p = _client_parser(sub, "cancel", "cancel a transfer")
    p.add_argument("id", metavar="ID", help="the transfer")
    p = _client_parser(sub, "uploads", "list stored uploads (transfer sources)")
    p.add_argument("--limit", type=int, default=20, help="how many (newest first; default 20)")


NAMES = frozenset(_EXAMPLES)


def main(args: argparse.Namespace) -> int:
    """Run a client command; 1 with one line on stderr when the gateway refuses or cannot be reached."""
    if args.command == "send":
        return _send(args)
    command = _COMMANDS[args.command]

    async def run() -> int:
        async with AsyncClient(args.url, args.token) as api:
            return await command(api, args)

    try:
        return asyncio.run(run())
    except ClientError as e:
        print(f"castray {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _nodes(api: AsyncClient, args: argparse.Namespace) -> int:
    nodes = await api.nodes(cluster=args.cluster, state=args.state)
    if args.json:
        output.print_json([n.model_dump(mode="json") for n in nodes])
        return 0
    rows = [(n.id, n.cluster_id, n.state, "head" if n.is_head else "", n.ip or "-",
             f"{n.resources.get('CPU', 0):g}", n.name) for n in nodes]
    output.table(f"{len(nodes)} node(s)", ("ID", "CLUSTER", "STATE", "ROLE", "IP", "CPU", "NAME"), rows)
    return 0


async def _clusters(api: AsyncClient, args: argparse.Namespace) -> int:
    clusters = await api.clusters()
    if args.json:
        output.print_json([c.model_dump(mode="json") for c in clusters])
        return 0
    rows = [(c.id, c.name, c.state, c.address or "-", f"{c.alive_node_count}/{c.node_count}",
             c.found_by, c.ray_version or "-") for c in clusters]
    output.table(f"{len(clusters)} cluster(s)", ("ID", "NAME", "STATE", "ADDRESS", "ALIVE/NODES",
                                                 "FOUND BY", "RAY"), rows)
    return 0


async def _discover(api: AsyncClient, args: argparse.Namespace) -> int:
    found = await api.discover()
    if args.json:
        output.print_json(found.model_dump(mode="json"))
    else:
        rows = [(c.id, c.name, c.dashboard_url or "-", c.state) for c in found.discovered_clusters]
        output.table(f"found {len(rows)} cluster(s)", ("ID", "NAME", "DASHBOARD", "STATE"), rows)
        if found.error:
            print(found.error, file=sys.stderr)
    return 0 if found.success else 1


async def _connect(api: AsyncClient, args: argparse.Namespace) -> int:
    done = await api.connect(args.address)
    if args.json:
        output.print_json(done.model_dump(mode="json"))
    else:
        print(done.message)
    return 0


async def _disconnect(api: AsyncClient, args: argparse.Namespace) -> int:
    done = await api.disconnect(args.cluster)
    if args.json:
        output.print_json(done.model_dump(mode="json"))
    else:
        print(done.message + (f": {', '.join(done.disconnected)}" if done.disconnected else ""))
    return 0


async def _transfers(api: AsyncClient, args: argparse.Namespace) -> int:
    if args.id and args.watch:
        record = await send.run_transfer(api, send.Sent(), quiet=args.json, existing=args.id)
        return send.report(record, as_json=args.json)
    if args.watch:
        return await _watch_all(api, as_json=args.json)
    if args.id:
        record = await api.transfer(args.id)
        if args.json:
            output.print_json(record.model_dump(mode="json"))
            return 0
        print(f"transfer {record.id}: {record.state} {record.mode} {record.file_name} "
              f"({output.size(record.bytes_total)}) created {output.when(record.created_at)}")
        rows = [(d.node_id, d.state, output.size(d.bytes_done), d.path or "-", d.sha256 or "-", d.error or "")
                for d in record.destinations]
        output.table("destinations", ("NODE", "STATE", "BYTES", "PATH", "SHA256", "ERROR"), rows)
        return 0
    page = await api.transfers(limit=args.limit)
    if args.json:
        output.print_json(page.model_dump(mode="json"))
        return 0
    listed = [(t.id, t.state, t.mode, t.file_name, output.size(t.bytes_total),
               f"{sum(d.state == 'completed' for d in t.destinations)}/{len(t.destinations)}",
               output.when(t.created_at)) for t in page.transfers]
    output.table(f"{len(listed)} of {page.total} transfer(s)", ("ID", "STATE", "MODE", "FILE", "SIZE",
                                                               "DONE", "CREATED"), listed)
    return 0


async def _watch_all(api: AsyncClient, *, as_json: bool) -> int:
    """A line per transfer event (progress left out) until Ctrl-C."""
    async with api.events(topics=("transfers",)) as stream:
        async for event in stream:
            if isinstance(event, SnapshotMessage) and stream.connects == 1:
                print("watching transfers (Ctrl-C stops)", file=sys.stderr, flush=True)
            if not isinstance(event, TransferEvent) or isinstance(event, TransferProgress):
                continue
            if as_json:
                print(json.dumps({"type": _EVENT_NAMES.get(type(event), "transfer"),
                                  **event.model_dump(mode="json")}), flush=True)
                continue
            node = getattr(event, "node_id", None)
            what = _EVENT_NAMES.get(type(event), "transfer-changed").removeprefix("transfer-")
            detail = getattr(event, "path", None) or getattr(event, "error", None) or ""
            print(f"{event.transfer_id} {node or '-'} {what} {detail}".rstrip(), flush=True)
    return 0


_EVENT_NAMES = {TransferStarted: "transfer-started", TransferCompleted: "transfer-completed",
                TransferFailed: "transfer-failed", TransferCancelled: "transfer-cancelled"}


async def _cancel(api: AsyncClient, args: argparse.Namespace) -> int:
    record = await api.cancel(args.id)
    if args.json:
        output.print_json(record.model_dump(mode="json"))
    else:
        print(f"transfer {record.id}: {record.state}" + (" (cancel requested)" if record.cancel_requested
                                                          and record.state == "running" else ""))
    return 0


async def _uploads(api: AsyncClient, args: argparse.Namespace) -> int:
    page = await api.uploads(limit=args.limit)
    if args.json:
        output.print_json(page.model_dump(mode="json"))
        return 0
    rows = [(u.upload_id, u.file_name, output.size(u.file_size), u.sha256[:16], u.origin,
             output.when(u.created_at)) for u in page.uploads]
    output.table(f"{len(rows)} of {page.total} upload(s)", ("ID", "FILE", "SIZE", "SHA256", "ORIGIN",
                                                           "CREATED"), rows)
    return 0


_COMMANDS: dict[str, Command] = {
    "nodes": _nodes, "clusters": _clusters, "discover": _discover, "connect": _connect,
    "disconnect": _disconnect, "transfers": _transfers, "cancel": _cancel, "uploads": _uploads}


# --- send ---------------------------------------------------------------------------------------------


def resolve(given: str, nodes: list[NodeInfo]) -> str:
    """A node id from its id, its name or a unique prefix of its id."""
    for node in nodes:
        if given in (node.id, node.name):
            return node.id
    matches = [n.id for n in nodes if n.id.startswith(given)]
    if len(matches) == 1:
        return matches[0]
    raise NotFound(404, f"no single node is {given!r}" + (f" (it could be {', '.join(matches)})" if matches
                                                         else ""), code="unknown_node")


async def _request(api: AsyncClient, args: argparse.Namespace, upload_id: str | None) -> TransferRequest:
    source: UploadSource | GenerateSource = (UploadSource(upload_id=upload_id) if upload_id
                                             else GenerateSource(generate=GenerateSpec(size=args.generate)))
    nodes = await api.nodes()  # every state: the gateway says why a node that is not ALIVE cannot have it
    if args.broadcast:
        targets = []
        if args.cluster:
            of_cluster = [n.id for n in nodes if n.cluster_id == args.cluster and n.state == "ALIVE"]
            if not of_cluster:
                raise NotFound(404, f"cluster {args.cluster!r} has no alive node", code="unknown_cluster")
            targets = of_cluster[:1]  # one of its nodes chooses the cluster
        return TransferRequest(source=source, mode="broadcast", targets=targets, file_name=args.name,
                               overwrite=args.overwrite)
    targets = [resolve(t.strip(), nodes) for t in args.to.split(",") if t.strip()]
    return TransferRequest(source=source, mode="unicast" if len(targets) == 1 else "multicast",
                           targets=targets, file_name=args.name, overwrite=args.overwrite)


def _send(args: argparse.Namespace) -> int:
    sent = send.Sent()

    async def run() -> int:
        async with AsyncClient(args.url, args.token) as api:
            upload_id = await send.upload(api, args.file, args.json) if args.file else None
            request = await _request(api, args, upload_id)
            record = await send.run_transfer(api, sent, quiet=args.json, request=request)
        return send.report(record, as_json=args.json)

    try:
        return asyncio.run(run())
    except ClientError as e:
        print(f"castray send: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the file to upload: missing, unreadable
        print(f"castray send: cannot read {e.filename or args.file}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return _interrupted(args, sent)


def _interrupted(args: argparse.Namespace, sent: send.Sent) -> int:
    """Ctrl-C: ask (on a terminal) whether to cancel the transfer; else it goes on in the background."""
    if sent.transfer_id is None:
        print("\ncastray send: interrupted before a transfer was queued", file=sys.stderr)
        return 130
    cancel = False
    if sys.stdin.isatty():
        try:
            cancel = input(f"\ncancel transfer {sent.transfer_id}? [y/N] ").strip().lower() in ("y", "yes")
        except (EOFError, KeyboardInterrupt):
            cancel = False
    if cancel:
        with Client(args.url, args.token) as api:
            print(f"transfer {sent.transfer_id}: {api.cancel(sent.transfer_id).state}", file=sys.stderr)
    else:
        print(f"\ntransfer {sent.transfer_id} goes on in the background; follow it with: "
              f"castray transfers {sent.transfer_id} --watch", file=sys.stderr)
    return 130
