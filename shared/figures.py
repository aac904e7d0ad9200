"""Figures that a service without an HTTP port publishes through Redis, for the gateway's ``/metrics``.

Why through Redis rather than a port per service: discovery, the node registry and the transfer service
serve no HTTP today, every replica already writes a heartbeat to Redis, and the gateway already reads
those at scrape time. One more hash (``Names.service_figures``, the same ``<service>:<instance>`` keys as
``Names.services``), written in the same transaction as the heartbeat and removed with it, gives
Prometheus one target (the gateway) instead of a port per replica in compose, and no new listener to
secure. The price: figures are as fresh as the last heartbeat (``CASTRAY_SERVICE_BEAT_S``), which suits
counters and histograms that Prometheus reads as rates.

Discovery's poll figures are per cluster id. The number of clusters a replica watches is not capped by a
setting (`castray.discovery.limits` bounds the node ids of one cluster, not the clusters), so
`CLUSTERS_MAX` bounds the series: clusters beyond it are counted together under `OTHER_CLUSTERS`. A cluster
that is removed or disconnected leaves the figures, and a replica that stops leading keeps none.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, Field

# Upper bounds (seconds) of the poll duration histogram; a poll's own timeout is CASTRAY_POLL_TIMEOUT (2 s).
POLL_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Clusters given figures of their own; the rest are summed under OTHER_CLUSTERS.
CLUSTERS_MAX: Final = 200
OTHER_CLUSTERS: Final = "other"


class ClusterPolls(BaseModel):
    """One cluster's node polls: a histogram of their durations, and the failed ones by error code."""

    buckets: list[int] = Field(default_factory=lambda: [0] * len(POLL_BUCKETS),
                               description="Polls that took at most POLL_BUCKETS[i] seconds (cumulative).")
    count: int = Field(default=0, description="Polls, failed ones included.")
    seconds: float = Field(default=0.0, description="Their total duration.")
    errors: dict[str, int] = Field(default_factory=dict,
                                   description="Failed polls by error code (a bounded set: the codes of "
                                   "discovery's errors).")

    def observe(self, seconds: float, error: str | None = None) -> None:
        self.count += 1
        self.seconds += seconds
        for i, bound in enumerate(POLL_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
        if error is not None:
            self.errors[error] = self.errors.get(error, 0) + 1


class Figures(BaseModel):
    """What one replica publishes beside its heartbeat; each service fills in its own fields."""

    polls: dict[str, ClusterPolls] = Field(default_factory=dict,
                                           description="discovery: node polls by cluster id.")
