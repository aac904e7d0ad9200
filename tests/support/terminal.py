"""A real terminal for the client commands' tests: a tmux server of the test's own (its own socket), one
window of a fixed size running bash; type into it, read its screen (capture-pane), stop it by its socket."""

from __future__ import annotations

import io
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest


class Terminal:
    def __init__(self, socket: str, env: Mapping[str, str]) -> None:
        self.socket = socket
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        self._tmux("new-session", "-d", "-s", "t", "-x", "160", "-y", "48",
                   f"env {exports} TERM=xterm-256color bash --norc --noprofile")

    def _tmux(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10)
        assert out.returncode == 0, f"tmux {args[0]}: {out.stderr}"
        return out.stdout

    def type(self, line: str) -> None:
        self._tmux("send-keys", "-t", "t", line, "Enter")

    def keys(self, *keys: str) -> None:
        """Keys as tmux names them (``C-c``), without Enter."""
        self._tmux("send-keys", "-t", "t", *keys)

    def screen(self, *, colours: bool = False) -> str:
        """The visible screen as text (``colours``: with its escape sequences, for a picture of it)."""
        return self._tmux("capture-pane", "-p", *(("-e",) if colours else ()), "-t", "t")

    def save_svg(self, path: Path, title: str) -> None:
        """The screen as an SVG picture (rich draws it from the screen's escape sequences)."""
        from rich.console import Console
        from rich.text import Text

        lines = self.screen(colours=True).rstrip("\n").splitlines()
        while lines and not Text.from_ansi(lines[-1]).plain.strip():
            lines.pop()
        console = Console(record=True, width=160, file=io.StringIO(), force_terminal=True)
        console.print(Text.from_ansi("\n".join(lines)))
        console.save_svg(str(path), title=title)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    """A tmux terminal (skipped where tmux is not installed: .ci/run installs it)."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    term = Terminal(f"castray-test-{uuid.uuid4().hex[:8]}", {"HOME": str(tmp_path)})
    try:
        yield term
    finally:
        term.close()
