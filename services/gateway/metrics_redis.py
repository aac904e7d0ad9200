"""The part of ``/metrics`` read from Redis at scrape time: the transfer request stream's depth, every
replica's heartbeat, and the figures that services without an HTTP port publish beside their heartbeats
(`castray.shared.figures`: discovery's polls by cluster). One pipeline per scrape; a read that fails
leaves its metrics out of that scrape rather than failing it, and a scrape writes nothing (forgotten
replicas are left to ``/api/services`` to remove)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from castray.gateway import keys
from castray.gateway.services_api import depth_of, queue_commands
from castray.shared import codec
from castray.shared.api import QueueDepth
from castray.shared.errors import EventDecodeError
from castray.shared.figures import POLL_BUCKETS, Figures
from castray.shared.heartbeat import ServiceReplica, replicas_of

log = logging.getLogger(__name__)

SCRAPE_READ_ERRORS = (RedisError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Scraped:
    """What one scrape read from Redis; None: that read failed, and its metrics are left out."""

    queue: QueueDepth | None = None
    replicas: list[ServiceReplica] | None = None
    # (service, instance) -> the figures it published, for the replicas listed above
    figures: dict[tuple[str, str], Figures] = field(default_factory=dict)


class RedisReadings(Collector):
    """The metrics read from Redis, as last read by `read`."""

    def __init__(self) -> None:
        self.scraped = Scraped()

    async def read(self, app: web.Application) -> None:
        """All reads in one pipeline (one round trip)."""
        redis, names, settings = app[keys.REDIS], app[keys.NAMES], app[keys.SETTINGS]
        pipe = redis.pipeline(transaction=False)
        queue_commands(pipe, names)
        pipe.hgetall(names.services)
        pipe.hgetall(names.service_figures)
        try:
            length, summary, raw, raw_figures = await pipe.execute(raise_on_error=False)
        except SCRAPE_READ_ERRORS as e:
            log.warning("metrics: the transfer queue and heartbeats left out, Redis read failed: %s", e)
            self.scraped = Scraped()
            return
        queue: QueueDepth | None = None
        try:
            queue = depth_of(length, summary)
        except SCRAPE_READ_ERRORS as e:
            log.warning("metrics: the transfer queue left out, Redis read failed: %s", e)
        replicas: list[ServiceReplica] | None = None
        if isinstance(raw, Exception):
            log.warning("metrics: heartbeats left out, Redis read failed: %s", raw)
        else:
            replicas, _ = replicas_of(raw, stale_beats=settings.service_stale_beats,
                                      forget_after=settings.service_forget_s)
        self.scraped = Scraped(queue=queue, replicas=replicas, figures=figures_of(raw_figures, replicas))

    def collect(self) -> Iterator[Metric]:
        queue, replicas = self.scraped.queue, self.scraped.replicas
        if queue is not None:
            yield GaugeMetricFamily("castray_transfer_stream_length",
                                    "Entries in the transfer request stream (XLEN)", value=queue.length)
            yield GaugeMetricFamily("castray_transfer_stream_pending", "Transfer requests delivered to a "
                                    "worker and not yet acknowledged (XPENDING)", value=queue.pending)
        if replicas is not None:
            yield from replica_metrics(replicas)
        yield from poll_metrics(self.scraped.figures)


def figures_of(raw: object, replicas: list[ServiceReplica] | None) -> dict[tuple[str, str], Figures]:
    """The figures of the replicas listed (a forgotten replica's are not shown); an entry that does not
    decode (another version's layout) is skipped."""
    if replicas is None or not isinstance(raw, dict):
        if isinstance(raw, Exception):
            log.warning("metrics: service figures left out, Redis read failed: %s", raw)
        return {}
    listed = {f"{r.service}:{r.instance}": (r.service, r.instance) for r in replicas}
    out: dict[tuple[str, str], Figures] = {}
    for key, value in raw.items():
        replica = listed.get(codec.as_text(key) or "")
        if replica is None:
            continue
        try:
            out[replica] = codec.decode_model(value, Figures)
        except EventDecodeError:
            continue
    return out


def replica_metrics(replicas: list[ServiceReplica]) -> Iterator[Metric]:
    up = GaugeMetricFamily("castray_service_up", "1 if the replica's heartbeat is fresh, 0 if stale",
                           labels=["service", "instance"])
    age = GaugeMetricFamily("castray_service_heartbeat_age_seconds", "Seconds since the replica's last "
                            "heartbeat", labels=["service", "instance"])
    for rep in replicas:
        up.add_metric([rep.service, rep.instance], 0 if rep.stale else 1)
        age.add_metric([rep.service, rep.instance], rep.age)
    yield up
    yield age


def poll_metrics(figures: dict[tuple[str, str], Figures]) -> Iterator[Metric]:
    """Discovery's node polls by replica and cluster id, as of each replica's last heartbeat."""
    duration = HistogramMetricFamily("castray_discovery_poll_duration_seconds",
                                     "Time a cluster's dashboard took to answer a node poll (failed polls "
                                     "included), by discovery replica and cluster id",
                                     labels=["instance", "cluster"])
    errors = CounterMetricFamily("castray_discovery_poll_errors", "Node polls that failed, by discovery "
                                 "replica, cluster id and error code", labels=["instance", "cluster", "code"])
    for (_, instance), figs in sorted(figures.items()):
        for cluster, polls in sorted(figs.polls.items()):
            pairs = zip(POLL_BUCKETS, polls.buckets, strict=False)
            buckets = [(str(float(bound)), float(n)) for bound, n in pairs]  # "1.0", as Histogram writes
            duration.add_metric([instance, cluster], [*buckets, ("+Inf", float(polls.count))],
                                sum_value=polls.seconds)
            for code, n in sorted(polls.errors.items()):
                errors.add_metric([instance, cluster, code], n)
    yield duration
    yield errors
