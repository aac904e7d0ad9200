"""Discovery's errors, one class per condition, with the manual's code and HTTP status as class attributes.

Raised where the condition arises and matched by class; the bus turns them into a failed reply (status
and code) only when they end a command (`castray.shared.bus.Bus._answer`).

`ProbeError`: why an address does not lead to a usable Ray cluster. 400 for a malformed address; 422 for
the others (dashboard_unreachable, not_ray_dashboard, gcs_unreachable, incompatible_version, timeout): it
is the request that cannot be carried out, not CastRay that failed. Then: node_list_unstable (why a watched
cluster fails whose node list changes on every poll), not_found (404), local_cluster and conflict (409),
unknown_command (400), and internal (500, a bug caught so that one cluster or candidate cannot stop the
others). `castray.shared.errors.AddressNotAllowed` (403) comes from the shared address policy.
"""

from __future__ import annotations

from castray.shared.errors import CastRayError, CodedError


class DiscoveryError(CodedError):
    """Base of discovery's refusals."""


class ProbeError(DiscoveryError):
    """An address does not lead to a usable Ray cluster."""

    status = 422


class AddressMalformed(ProbeError):
    status = 400
    code = "address_malformed"


class DashboardUnreachable(ProbeError):
    code = "dashboard_unreachable"


class NotRayDashboard(ProbeError):
    code = "not_ray_dashboard"


class NotHttp(NotRayDashboard):
    """Something answered, but not in HTTP/1.1 (a GCS answers with HTTP/2 frames): worth a GCS probe."""


class GcsUnreachable(ProbeError):
    code = "gcs_unreachable"


class IncompatibleVersion(ProbeError):
    code = "incompatible_version"


class TimedOut(ProbeError):
    code = "timeout"


class NodeListUnstable(DiscoveryError):
    status = 422
    code = "node_list_unstable"


class ClusterNotFound(DiscoveryError):
    status = 404
    code = "not_found"


class LocalClusterStays(DiscoveryError):
    """The local cluster CastRay runs beside cannot be disconnected."""

    status = 409
    code = "local_cluster"


class DisconnectedMeanwhile(DiscoveryError):
    """The cluster was disconnected while a connect adopted it."""

    status = 409
    code = "conflict"


class UnknownCommand(DiscoveryError):
    code = "unknown_command"


class Unexpected(DiscoveryError):
    """A bug met while probing or polling, reported as that candidate's or cluster's failure."""

    status = 500
    code = "internal"


class NotLeading(CastRayError):
    """This replica no longer holds the discovery lease: it must not write the state."""
