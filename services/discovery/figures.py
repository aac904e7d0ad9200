"""Discovery's poll figures (`castray.shared.figures`): every watcher's polls timed and their failures
counted by cluster id, published with the replica's heartbeat for the gateway's ``/metrics``."""

from __future__ import annotations

from castray.shared.figures import CLUSTERS_MAX, OTHER_CLUSTERS, ClusterPolls, Figures


class PollFigures:
    """The polls of the clusters this replica watches; one per replica, kept across its terms."""

    def __init__(self, *, clusters_max: int = CLUSTERS_MAX) -> None:
        self.clusters_max = clusters_max
        self._polls: dict[str, ClusterPolls] = {}

    def observe(self, cluster_id: str, seconds: float, error: str | None = None) -> None:
        """One poll of ``cluster_id`` that took ``seconds``; ``error``: its error code if it failed."""
        self._of(cluster_id).observe(seconds, error)

    def _of(self, cluster_id: str) -> ClusterPolls:
        polls = self._polls.get(cluster_id)
        if polls is None:  # one series is kept for OTHER_CLUSTERS: clusters_max in all
            own = len(self._polls) - (OTHER_CLUSTERS in self._polls)
            key = cluster_id if own < self.clusters_max - 1 else OTHER_CLUSTERS
            polls = self._polls.setdefault(key, ClusterPolls())
        return polls

    def forget(self, cluster_id: str) -> None:
        """A cluster removed or disconnected: its series go."""
        self._polls.pop(cluster_id, None)

    def clear(self) -> None:
        """The replica stopped leading: it polls nothing."""
        self._polls.clear()

    def figures(self) -> Figures:
        return Figures(polls={cid: p.model_copy(deep=True) for cid, p in self._polls.items()})
