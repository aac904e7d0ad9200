"""Why a cluster could not be reached, in the manual's terms, as `CommandError`s with a status and code.

address_malformed (400); dashboard_unreachable, not_ray_dashboard, gcs_unreachable, incompatible_version and
timeout (422: the address the user gave does not lead to a usable Ray cluster; a 4xx, since it is the
request that cannot be carried out, not CastRay that failed); not_found (404), local_cluster (409).
node_list_unstable: why a watched cluster fails whose node list changes on every poll.
"""

from __future__ import annotations

from castray.shared.errors import CommandError


def address_malformed(message: str) -> CommandError:
    return CommandError(message, status=400, code="address_malformed")


class NotHttp(CommandError):
    """Something answered, but not in HTTP/1.1 (a GCS answers with HTTP/2 frames): worth a GCS probe."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=422, code="not_ray_dashboard")


def dashboard_unreachable(message: str) -> CommandError:
    return CommandError(message, status=422, code="dashboard_unreachable")


def not_ray_dashboard(message: str) -> CommandError:
    return CommandError(message, status=422, code="not_ray_dashboard")


def gcs_unreachable(message: str) -> CommandError:
    return CommandError(message, status=422, code="gcs_unreachable")


def incompatible_version(message: str) -> CommandError:
    return CommandError(message, status=422, code="incompatible_version")


def timed_out(message: str) -> CommandError:
    return CommandError(message, status=422, code="timeout")


def node_list_unstable(message: str) -> CommandError:
    return CommandError(message, status=422, code="node_list_unstable")


def not_found(message: str) -> CommandError:
    return CommandError(message, status=404, code="not_found")


def is_probe_error(e: CommandError) -> bool:
    """True for the codes a probe of an address can end in."""
    return e.code in {
        "address_malformed",
        "dashboard_unreachable",
        "not_ray_dashboard",
        "gcs_unreachable",
        "incompatible_version",
        "timeout",
    }
