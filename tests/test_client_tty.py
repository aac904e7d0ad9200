"""``castray send`` as a person sees it: in a real terminal (tmux), a 256 MiB file broadcast to a head and
a worker shows the upload bar, then a bar per destination that moves, then the verified paths, and exits 0.
And a destination that dies mid-transfer makes ``send`` exit 1 naming that node and why."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from castray import local_ray
from tests.support.client_stack import EXIT_GRACE, Stack, start_stack
from tests.support.ray_nodes import start_worker
from tests.support.terminal import Terminal
from tests.support.transfer_env import sha256_file
from tests.support.up import Up
from tests.support.waiting import wait_for_blocking

MiB = 1024 * 1024
BAR = "━"  # rich's bar


def test_send_in_a_terminal_shows_the_upload_then_a_moving_bar_per_destination(
        stack_with_worker: Stack, terminal: Terminal, tmp_path: Path) -> None:
    stack = stack_with_worker
    source = tmp_path / "big.bin"
    with source.open("wb") as f:
        for _ in range(256):
            f.write(os.urandom(MiB))
    digest = sha256_file(source)
    bin_dir = Path(sys.executable).parent  # where `castray` is
    terminal.type(f"export CASTRAY_GATEWAY_URL={stack.url} PATH={bin_dir}:$PATH PS1='$ '; cd {tmp_path}")
    terminal.type("clear")
    terminal.type(f"castray send {source.name} --broadcast; echo EXIT=$?")
    screens: list[str] = []

    def ended() -> bool:
        screens.append(terminal.screen())
        return re.search(r"^EXIT=\d+", screens[-1], re.M) is not None  # the line, not the command typed

    wait_for_blocking(ended, "castray send to end", deadline=240, interval=0.1)
    final = screens[-1]
    if picture := os.environ.get("CASTRAY_SEND_SCREENSHOT"):  # docs/send.svg, the README's picture
        terminal.save_svg(Path(picture), "castray send big.bin --broadcast")
    assert re.search(r"^EXIT=0$", final, re.M), final
    upload_lines = [line for s in screens for line in s.splitlines() if line.startswith("upload big.bin")]
    assert any(BAR in line for line in upload_lines), screens[-1]
    for node in stack.node_ids:
        bars = {line for s in screens for line in s.splitlines() if line.startswith(node) and BAR in line}
        shown = {m.group(0) for line in bars if (m := re.search(r"[\d.]+/[\d.]+ [KMG]B", line))}
        assert len(shown) >= 2 or any("completed" in line for line in bars), bars  # it moved
        landed = stack.inbox / node / source.name
        assert f"{node}: verified {landed} sha256 {digest}" in final.replace("\n", ""), final
        assert sha256_file(landed) == digest


def test_a_destination_that_dies_makes_send_exit_1_naming_it(
        ray_head: local_ray.RayNode, ray_workers: list[local_ray.RayNode], isolated_env: dict[str, str],
        start_up: Callable[..., Up], tmp_path: Path) -> None:
    ray_workers.append(start_worker(ray_head))
    slow = {**isolated_env, "CASTRAY_RATE_LIMIT": str(16 * MiB)}  # 128 MiB: about 8 s per destination
    stack = start_stack(start_up, slow, ray_head, [ray_head, *ray_workers], tmp_path / "inbox")
    head, worker = stack.node_ids
    env = {**os.environ, "CASTRAY_GATEWAY_URL": stack.url}
    command = [sys.executable, "-m", "castray.cli", "send", "--generate", "128MiB", "--broadcast"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    running = re.compile(rf"^{re.escape(worker)}: running ([1-9]\d*)%")
    wait_for_blocking(lambda: any(running.match(line) for line in lines),
                      "the worker's copy to be under way", deadline=120, interval=0.1)
    ray_workers[0].stop()
    proc.wait(timeout=240)
    reader.join(timeout=10)
    err = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 1, "".join(lines) + err
    assert worker in err and "not verified" in err, err
    assert any(line.startswith(f"{worker}: failed: ") for line in lines), lines
    assert any(line.startswith(f"{head}: verified ") for line in lines), lines


def test_ctrl_c_asks_whether_to_cancel_and_piped_leaves_it_running(
        ray_head: local_ray.RayNode, isolated_env: dict[str, str], start_up: Callable[..., Up],
        terminal: Terminal, tmp_path: Path) -> None:
    slow = {**isolated_env, "CASTRAY_RATE_LIMIT": str(8 * MiB)}  # 128 MiB: about 16 s
    stack = start_stack(start_up, slow, ray_head, [ray_head], tmp_path / "inbox")
    [head] = stack.node_ids
    env = {**os.environ, "CASTRAY_GATEWAY_URL": stack.url}

    # Piped, no terminal to ask: SIGINT leaves the transfer running, and says how to follow it.
    command = [sys.executable, "-m", "castray.cli", "send", "--generate", "128MiB", "--to", head, "--name",
               "piped.bin"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    queued = re.match(r"transfer (\w+) queued", first)
    assert queued, first
    with stack.client() as api:
        wait_for_blocking(lambda: api.transfer(queued.group(1)).state == "running", "the piped copy to run")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=EXIT_GRACE)
        assert proc.returncode == 130 and "goes on in the background" in err, err
        assert f"castray transfers {queued.group(1)} --watch" in err
        assert api.transfer(queued.group(1)).state in ("running", "completed")

        # In a terminal: Ctrl-C asks, and "y" cancels.
        terminal.type(f"CASTRAY_GATEWAY_URL={stack.url} {sys.executable} -m castray.cli send --generate "
                      f"128MiB --to {head} --name tty.bin; echo EXIT=$?")
        def bar_running() -> str | None:
            screen = terminal.screen()
            return screen if re.search(rf"^{re.escape(head)}.*{BAR}.*running", screen, re.M) else None

        screen = wait_for_blocking(bar_running, "the bar of the running copy", interval=0.1)
        transfer_id = re.search(r"transfer (\w+) queued", screen)
        assert transfer_id, screen
        terminal.keys("C-c")
        wait_for_blocking(lambda: f"cancel transfer {transfer_id.group(1)}? [y/N]" in terminal.screen(),
                          "the question", interval=0.1)
        terminal.type("y")
        wait_for_blocking(lambda: re.search(r"^EXIT=130$", terminal.screen(), re.M), "castray send to end")
        wait_for_blocking(lambda: api.transfer(transfer_id.group(1)).state == "cancelled", "the cancel")
