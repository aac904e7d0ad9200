"""`castray up` looks for a running cluster before it starts a head (castray/ray_find.py). Whatever answers
on a dashboard port may lie: deeply nested JSON is a no, not a crash of `castray up`, and a redirect is
never followed to another host or port."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from castray.ray_find import dashboard_answers


class _Liar(http.server.BaseHTTPRequestHandler):
    body = b""
    location = ""
    url = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.location:
            self.send_response(302)
            self.send_header("Location", self.location)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def liar() -> Iterator[type[_Liar]]:
    handler: type[_Liar] = type("Liar", (_Liar,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()


def test_deeply_nested_json_is_not_a_dashboard_and_not_a_crash(liar: type[_Liar]) -> None:
    liar.body = b"[" * 60_000 + b"]" * 60_000
    assert dashboard_answers(liar.url) is False
    liar.body = b'{"ray_version": "2.60.0"}'
    assert dashboard_answers(liar.url) is True  # the same server, honest


def test_a_redirect_is_not_followed(liar: type[_Liar]) -> None:
    elsewhere = socket.socket()
    elsewhere.bind(("127.0.0.1", 0))
    elsewhere.listen(8)
    elsewhere.setblocking(False)
    try:
        liar.location = f"http://127.0.0.1:{elsewhere.getsockname()[1]}/api/version"
        assert dashboard_answers(liar.url) is False
        with pytest.raises(BlockingIOError):  # nobody knocked
            elsewhere.accept()
    finally:
        elsewhere.close()
