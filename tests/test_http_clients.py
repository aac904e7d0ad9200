"""Issue 13: the CLI, bench/ and the tests call the gateway's API through castray.client. A file that opens
an HTTP client of its own (an aiohttp session, urllib) is one that checks the wire or talks to a server that
is not the gateway, listed here with why (the rule: tests/support/README.md, "Which HTTP client a test
uses"). A new one must be added here, which makes its author say which of the two it is. The services are
held to it too: theirs talk to Ray's dashboards, and one service reads an upload from the gateway."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OWN_CLIENT = re.compile(r"aiohttp\.ClientSession\b|urllib\.request|urlopen\(")

WIRE_OR_NOT_THE_GATEWAY = {
    "bench/fanout.py": "a load generator; which gateway process answered (X-CastRay-Instance); raw frames",
    "bench/live.py": "polls Ray's dashboard (the API itself: AsyncClient)",
    "bench/scale.py": "a load generator measuring the server, and a bare HTTP server to compare with",
    "castray/local_ray.py": "Ray's dashboard",
    "castray/ray_find.py": "Ray's dashboard",
    "services/discovery/dashboard.py": "Ray's dashboard (DashboardClient, on the worker's session)",
    "services/discovery/probe.py": "Ray's dashboard (Prober, on the worker's session)",
    "services/discovery/worker.py": "Ray's dashboards: the one session its prober and watchers share",
    "services/transfer/sources.py": "the gateway, as a byte stream: a transfer driver's plan thread "
                                    "(blocking) reads an upload's content chunk by chunk as it hashes and "
                                    "sends it; the SDK's calls are async (Client runs them on a loop thread "
                                    "of its own) and download_upload writes a whole file, a second copy of "
                                    "the upload before its first chunk could go",
    "tests/support/acceptance.py": "hostile requests and their raw answers; raw /ws frames (WsWatch)",
    "tests/support/dashboard_proxy.py": "a proxy in front of Ray's dashboard",
    "tests/support/gateway_processes.py": "which gateway process answered each request",
    "tests/support/reverse_proxy.py": "a reverse proxy in the middle",
    "tests/test_acceptance_clusters.py": "the HOSTILE table and raw /ws frames (the API: AsyncClient)",
    "tests/test_acceptance_hostile.py": "raw /ws frames (the API: AsyncClient)",
    "tests/test_acceptance_walkthrough.py": "the page and the original's /ws frames (the API: AsyncClient)",
    "tests/test_discovery_allow_list.py": "discovery's prober against dashboards",
    "tests/test_discovery_lying_cluster.py": "discovery's dashboard client against a hostile dashboard",
    "tests/test_gateway_backpressure.py": "connections held, dropped and queued at the server",
    "tests/test_gateway_fanout.py": "connection storms beyond the Redis pool",
    "tests/test_gateway_main.py": "the /ws close frame at shutdown",
    "tests/test_gateway_ws.py": "the /ws protocol's frames",
    "tests/test_original_files.py": "the original page's calls with their status codes",
    "tests/test_original_status.py": "the original page's calls, refusals and status_update frames",
    "tests/test_ui.py": "the page, its assets and its CSP header",
}


def test_only_files_that_check_the_wire_open_an_http_client_of_their_own() -> None:
    found = set()
    for folder in ("castray", "bench", "tests", "services", "shared"):
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("castray/client/") or rel == "tests/test_http_clients.py":
                continue
            if OWN_CLIENT.search(path.read_text(errors="replace")):
                found.add(rel)
    unlisted = found - set(WIRE_OR_NOT_THE_GATEWAY)
    assert not unlisted, f"use castray.client for the API, or list the file here with why: {sorted(unlisted)}"
    assert set(WIRE_OR_NOT_THE_GATEWAY) - found == set(), "listed, but no longer opens a client: unlist it"
