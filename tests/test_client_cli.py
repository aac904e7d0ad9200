"""The client commands against ``castray up`` with a real Ray head and worker, run as a user runs them
(``python -m castray.cli``), piped: plain lines, ``--json``, and exit codes (a destination that fails makes
``send`` exit 1 naming it and why)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.client_stack import EXIT_GRACE, Stack
from tests.support.transfer_env import sha256_file

if TYPE_CHECKING:
    from tests.support.gateway_fixtures import GatewayFactory

pytest_plugins = ("tests.support.gateway_fixtures",)  # make_gateway
MiB = 1024 * 1024


def castray(stack: Stack, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CASTRAY_GATEWAY_URL": stack.url}
    env.pop("CASTRAY_API_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "castray.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_listing_commands_piped_and_as_json(stack_with_worker: Stack) -> None:
    stack = stack_with_worker
    head, worker = stack.node_ids
    nodes = castray(stack, "nodes")
    assert nodes.returncode == 0, nodes.stderr
    header, *rows = nodes.stdout.splitlines()
    assert header.split()[:3] == ["ID", "CLUSTER", "STATE"] and "\x1b[" not in nodes.stdout  # no colours
    assert sorted(r.split()[0] for r in rows) == sorted([head, worker])
    assert [r.split()[3] for r in rows if r.startswith(head)] == ["head"]
    as_json = json.loads(castray(stack, "nodes", "--state", "alive", "--json").stdout)
    assert sorted(n["id"] for n in as_json) == sorted([head, worker])
    [cluster] = json.loads(castray(stack, "clusters", "--json").stdout)
    assert (cluster["node_count"], cluster["alive_node_count"]) == (2, 2)
    assert json.loads(castray(stack, "nodes", "--cluster", "nope", "--json").stdout) == []
    plain = castray(stack, "clusters").stdout.splitlines()
    assert plain[1].split()[0] == cluster["id"] and "2/2" in plain[1]
    assert castray(stack, "discover", "--json").returncode == 0
    for command in ("nodes", "send", "transfers", "cancel", "uploads", "connect", "disconnect"):
        helped = castray(stack, command, "--help")
        assert helped.returncode == 0 and "example:\n  castray " + command in helped.stdout, helped.stdout


def test_send_verifies_every_destination_or_names_the_one_that_failed(stack_with_worker: Stack,
                                                                      tmp_path: Path) -> None:
    stack = stack_with_worker
    head, worker = stack.node_ids
    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(8 * MiB + 5))
    digest = sha256_file(source)

    env = {**os.environ, "CASTRAY_GATEWAY_URL": stack.url}
    watcher = subprocess.Popen([sys.executable, "-m", "castray.cli", "transfers", "--watch"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert watcher.stderr is not None
    assert watcher.stderr.readline() == "watching transfers (Ctrl-C stops)\n"  # subscribed: nothing missed
    sent = castray(stack, "send", str(source), "--broadcast")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    transfer_id = next(line.split()[1] for line in sent.stdout.splitlines() if line.startswith("transfer "))
    assert watcher.stdout is not None
    watched = [watcher.stdout.readline() for _ in range(4)]  # started, two destinations, the whole
    watcher.send_signal(signal.SIGINT)
    assert watcher.wait(timeout=EXIT_GRACE) == 130
    assert watched[0].split()[:3] == [transfer_id, "-", "started"], watched
    assert {line.split()[1] for line in watched[1:3]} == {head, worker}, watched
    assert watched[3].split() == [transfer_id, "-", "completed"], watched
    lines = sent.stdout.splitlines()
    assert any(line.startswith(f"upload {source}: stored as ") for line in lines), lines
    assert any(" queued to 2 node(s)" in line for line in lines), lines
    for node in (head, worker):
        landed = stack.inbox / node / source.name
        assert f"{node}: verified {landed} sha256 {digest}" in lines, lines
        assert sha256_file(landed) == digest
    assert "\x1b[" not in sent.stdout

    # The same name again, without --overwrite, to the head and the worker: both refuse, exit 1 names them.
    again = castray(stack, "send", str(source), "--to", f"{head},{worker}")
    assert again.returncode == 1, again.stdout + again.stderr
    assert head in again.stderr and worker in again.stderr and "exists" in again.stderr, again.stderr
    assert f"{head}: failed: " in again.stdout

    overwritten = castray(stack, "send", "--generate", "2MiB", "--name", source.name, "--to", head,
                          "--overwrite", "--json")
    assert overwritten.returncode == 0, overwritten.stderr
    record = json.loads(overwritten.stdout)
    assert record["state"] == "completed" and record["destinations"][0]["node_id"] == head
    assert sha256_file(stack.inbox / head / source.name) == record["sha256"] != digest

    listed = json.loads(castray(stack, "transfers", "--json").stdout)
    assert record["id"] in [t["id"] for t in listed["transfers"]] and listed["total"] == 3
    shown = castray(stack, "transfers", record["id"])
    assert shown.returncode == 0 and f"transfer {record['id']}: completed" in shown.stdout
    watched = castray(stack, "transfers", record["id"], "--watch")
    assert watched.returncode == 0 and f"{head}: verified " in watched.stdout, watched.stdout
    refused = castray(stack, "cancel", record["id"])
    assert refused.returncode == 1 and "409" in refused.stderr, refused.stderr
    uploads = castray(stack, "uploads")
    assert source.name in uploads.stdout and uploads.returncode == 0
    unknown = castray(stack, "send", "--generate", "1MiB", "--to", "no-such-node")
    assert unknown.returncode == 1 and "no single node is 'no-such-node'" in unknown.stderr


def test_every_commands_help_has_an_example() -> None:
    from castray.cli import build_parser
    from castray.completion import subcommands

    commands = subcommands(build_parser())
    assert {"up", "gateway", "send", "nodes", "completion", "health"} <= set(commands)
    for name, parser in commands.items():
        assert "example:\n  " in parser.format_help(), name


def test_version_flag() -> None:
    out = subprocess.run([sys.executable, "-m", "castray.cli", "--version"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and re.fullmatch(r"castray \S+\n", out.stdout), out


def test_bash_completion_offers_the_real_subcommands_and_options() -> None:
    script = subprocess.run([sys.executable, "-m", "castray.cli", "completion", "bash"], capture_output=True,
                            text=True, timeout=60, check=True).stdout
    probe = (f"{script}\nCOMP_WORDS=(castray se); COMP_CWORD=1; _castray; echo \"${{COMPREPLY[@]}}\"\n"
             "COMP_WORDS=(castray send --br); COMP_CWORD=2; _castray; echo \"${COMPREPLY[@]}\"\n"
             "COMP_WORDS=(castray transfers --w); COMP_CWORD=2; _castray; echo \"${COMPREPLY[@]}\"\n")
    out = subprocess.run(["bash", "--norc", "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines() == ["send", "--broadcast", "--watch"], out
    zsh = subprocess.run([sys.executable, "-m", "castray.cli", "completion", "zsh"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert zsh.startswith("autoload -U +X bashcompinit") and script in zsh


async def test_the_commands_send_the_token(make_gateway: GatewayFactory) -> None:
    token = "a-token-long-enough-for-the-gateway"
    gateway = await make_gateway(api_token=token)
    url = str(gateway.make_url("")).rstrip("/")

    async def run(*args: str, **env: str) -> tuple[int, str, str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CASTRAY_")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "castray.cli", *args, env={**clean, **env},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode(), err.decode()

    code, _, err = await run("nodes", "--url", url)
    assert code == 1 and "401" in err and token not in err
    assert await run("nodes", "--json", "--url", url, "--token", token) == (0, "[]\n", "")
    code, out, _ = await run("uploads", "--json", CASTRAY_GATEWAY_URL=url, CASTRAY_API_TOKEN=token)
    assert code == 0 and json.loads(out) == {"limit": 20, "offset": 0, "total": 0, "uploads": []}
