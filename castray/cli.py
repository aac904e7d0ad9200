"""The ``castray`` command: ``up`` (everything on one machine), one subcommand per service, and helpers.

Options only set ``CASTRAY_*`` environment variables: every service, and ``castray up``'s children, read
their settings from the environment alone, so a container and a ``castray up`` child run the same way.
Service modules are imported inside their subcommand, so ``castray --help`` works without their extras.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

from castray.services import SERVICES

_RAW = argparse.RawDescriptionHelpFormatter
_EXAMPLES = {
    "up": "castray up --port 8080",
    "discovery": "CASTRAY_DISCOVERY_ADDRESSES=10.0.0.5:8265 castray discovery",
    "registry": "castray registry --redis-url redis://redis:6379/0",
    "transfer": "castray transfer --join-ray 10.0.0.5:6379",
    "gateway": "CASTRAY_API_TOKEN=$(cat token) castray gateway --host 0.0.0.0 --port 8000",
    "version": "castray version",
}


def _example(name: str) -> str:
    return f"example:\n  {_EXAMPLES[name]}"


_SERVICE_HELP = {
    "discovery": "find Ray clusters and watch their nodes (publishes cluster and node events)",
    "registry": "materialize the merged node view in Redis (the node-registry service)",
    "transfer": "transfer worker: runs file transfers on Ray nodes (scale out with more replicas)",
    "gateway": "REST API, WebSocket relay and web page (aiohttp)",
}

# argparse destination -> environment variable it sets.
_ENV_OF = {
    "redis_url": "CASTRAY_REDIS_URL",
    "namespace": "CASTRAY_NAMESPACE",
    "log_level": "CASTRAY_LOG_LEVEL",
    "host": "CASTRAY_HOST",
    "port": "CASTRAY_PORT",
    "data_dir": "CASTRAY_DATA_DIR",
    "join_ray": "CASTRAY_JOIN_RAY",
    "gateway_processes": "CASTRAY_GATEWAY_PROCESSES",
}


def version() -> str:
    try:
        return metadata.version("castray")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", metavar="URL", help="Redis URL (sets CASTRAY_REDIS_URL)")
    p.add_argument("--namespace", metavar="NS", help="prefix of every Redis key (sets CASTRAY_NAMESPACE)")
    p.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR (CASTRAY_LOG_LEVEL)")


def _add_http(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--host", metavar="H", help=f"address {what} binds (CASTRAY_HOST; default 127.0.0.1); "
                   "any other than loopback needs CASTRAY_API_TOKEN (`castray up` makes one)")
    p.add_argument("--port", metavar="N", type=_port, help=f"port {what} serves on (CASTRAY_PORT; 8000)")


def _add_processes(p: argparse.ArgumentParser, flag: str) -> None:
    p.add_argument(flag, dest="gateway_processes", metavar="N", type=_processes,
                   help="gateway processes sharing the port, SO_REUSEPORT (CASTRAY_GATEWAY_PROCESSES; 1)")


def _processes(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"a number of processes is 1-64, not {text!r}")
    return int(text)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; tests parse compose commands with it."""
    parser = argparse.ArgumentParser(
        prog="castray",
        description="CastRay: one live view of every Ray node you can reach, and file transfer between them.",
    )
    parser.add_argument("--version", action="version", version=f"castray {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    up = sub.add_parser("up", help="run every service on this machine (Redis and a Ray head if needed)",
                        description="Run discovery, registry, transfer and gateway as child processes. "
                        "Uses the Redis at CASTRAY_REDIS_URL (or REDIS_URL) if it answers, else starts an "
                        "embedded one; uses a running Ray cluster if one is found, else starts a local head.",
                        epilog=_example("up"), formatter_class=_RAW)
    _add_http(up, "the gateway")
    _add_processes(up, "--gateways")
    up.add_argument("--no-ray", action="store_true", help="never start a Ray head (CASTRAY_START_RAY=0)")
    up.add_argument("--data-dir", metavar="DIR", help="uploads, Redis, local Ray head (CASTRAY_DATA_DIR)")
    _add_common(up)

    for name, help_text in _SERVICE_HELP.items():
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=_example(name),
                           formatter_class=_RAW)
        if name == "gateway":
            _add_http(p, "the gateway")
            _add_processes(p, "--processes")
        if name == "transfer":
            p.add_argument("--join-ray", metavar="GCS[,GCS...]", help="first join this host to the Ray "
                           "cluster at each GCS (host:port) as a 0-CPU node: for containers and for clusters "
                           "on other machines (CASTRAY_JOIN_RAY)")
        _add_common(p)

    health = sub.add_parser("health", help="exit 0 if Redis (and --url, --service) answer: the container "
                            "healthcheck", description="Exit 0 when Redis at the configured URL answers "
                            "PING, with --url when that URL answers HTTP 2xx, and with --service when that "
                            "service's replica on this host has a fresh heartbeat; else print why, exit 1.",
                            epilog="example:\n  castray health --service transfer",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    health.add_argument("--url", metavar="URL", help="also GET this URL (e.g. the gateway's /api/health)")
    health.add_argument("--service", choices=("discovery", "registry", "transfer", "gateway"),
                        help="also check the heartbeat of this service's replica on this host")
    _add_common(health)

    sub.add_parser("version", help="print the CastRay version", epilog=_example("version"),
                   formatter_class=_RAW)
    completion = sub.add_parser("completion", help="print a shell completion script (bash or zsh)",
                                description="Print a completion script for the castray command.",
                                epilog='example:\n  eval "$(castray completion bash)"   # in ~/.bashrc; zsh: '
                                '~/.zshrc', formatter_class=argparse.RawDescriptionHelpFormatter)
    completion.add_argument("shell", choices=("bash", "zsh"))
    from castray import commands  # the client commands: castray.client (aiohttp) and rich, base dependencies

    commands.add_parsers(sub)
    return parser


def apply_env(args: argparse.Namespace, environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Copy the options that were given into their ``CASTRAY_*`` variables."""
    for dest, var in _ENV_OF.items():
        value = getattr(args, dest, None)
        if value is not None:
            environ[var] = str(value)
    if getattr(args, "no_ray", False):
        environ["CASTRAY_START_RAY"] = "0"


def _run_service(name: str) -> int:
    module = importlib.import_module(SERVICES[name])
    entry: Callable[[], None] = module.main
    if name != "transfer":
        entry()
        return 0
    from castray import ray_join
    from castray.errors import JoinError

    try:
        with ray_join.joined():
            entry()
    except JoinError as exc:
        print(f"castray transfer: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_up() -> int:
    from castray import up

    return up.main()


def _run_health(args: argparse.Namespace) -> int:
    from castray import health

    return health.main(url=args.url, service=args.service)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    apply_env(args)
    if args.command == "version":
        print(f"castray {version()}")
        return 0
    if args.command == "up":
        return _run_up()
    if args.command == "health":
        return _run_health(args)
    if args.command == "completion":
        from castray import completion

        print(completion.script(build_parser(), args.shell), end="")
        return 0
    if args.command in _SERVICE_HELP:
        return _run_service(args.command)
    from castray import commands

    return commands.main(args)


if __name__ == "__main__":  # `python -m castray.cli <command>`: what `castray up` runs for its children
    sys.exit(main())
