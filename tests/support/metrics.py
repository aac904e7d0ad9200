"""Reading ``/metrics`` with prometheus_client's own parser, and the metric names a Grafana dashboard's
PromQL asks for (parsed by a real PromQL parser, `promql_parser`), for the metrics tests.

Names are compared as Prometheus stores them, as samples: ``x_total`` for a counter, ``x_bucket``,
``x_sum`` and ``x_count`` for a histogram. So an expression naming the histogram ``x`` itself, or the
counter without its ``_total``, names a series that does not exist, and is reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import promql_parser
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from castray.shared import codec
from castray.shared.events import Payload, wrap
from castray.shared.names import Names

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

# Grafana's own interval variables, and any other variable, made something PromQL parses.
_INTERVALS = re.compile(r"\$\{?(__rate_interval|__interval|__range)\b\}?")
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*\w+\s*\)")


async def scrape_text(client: TestClient, **headers: str) -> str:
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.text()


def samples_of(text: str) -> Samples:
    """``{(sample name, sorted labels): value}``."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def scrape(client: TestClient, **headers: str) -> Samples:
    return samples_of(await scrape_text(client, **headers))


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def sample_names(text: str) -> set[str]:
    """The names of the series a scrape holds (samples, not families: ``x_total``, ``x_bucket``)."""
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside rows too."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panels(panel)


def exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """``(panel title, expr)`` of every target of every panel that has targets."""
    return [(str(p.get("title", "")), str(t["expr"]))
            for p in panels(dashboard) for t in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (`ValueError` if it does not parse)."""
    plain = _VARIABLE.sub(".*", _INTERVALS.sub("5m", expr))
    return set(_names(promql_parser.parse(plain)))


def _names(node: Any) -> Iterator[str]:
    if isinstance(node, promql_parser.VectorSelector):
        yield _selector_name(node)
    elif isinstance(node, promql_parser.MatrixSelector):
        yield _selector_name(node.vector_selector)
    elif isinstance(node, promql_parser.Call):
        for arg in node.args:
            yield from _names(arg)
    elif isinstance(node, promql_parser.BinaryExpr):
        yield from _names(node.lhs)
        yield from _names(node.rhs)
    elif isinstance(node, promql_parser.AggregateExpr):
        yield from _names(node.expr)
        if node.param is not None:
            yield from _names(node.param)
    elif isinstance(node, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr):
        yield from _names(node.expr)


def _selector_name(selector: Any) -> str:
    if selector.name is not None:
        return str(selector.name)
    for m in selector.matchers.matchers:
        if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal:
            return str(m.value)
    raise ValueError(f"a selector without one metric name: {selector}")


def variable_metrics(dashboard: dict[str, Any]) -> set[str]:
    """The metric names the dashboard's query variables ask for (``label_values(metric, label)``, or an
    expression)."""
    out: set[str] = set()
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var["query"] if isinstance(var["query"], str) else var["query"]["query"]
        found = _LABEL_VALUES.fullmatch(query.strip())
        out |= {found.group(1)} if found else metric_names(query)
    return out


def missing_metrics(dashboard: dict[str, Any], exposed: set[str]) -> dict[str, set[str]]:
    """``{expr: the names it selects that are not exposed}``, for the exprs that name any."""
    out: dict[str, set[str]] = {}
    for _, expr in exprs(dashboard):
        missing = metric_names(expr) - exposed
        if missing:
            out[expr] = missing
    return out


class TimedPublisher:
    """Publishes events with the envelope times a test chooses (durations and throughputs are computed
    from them), as one source with increasing sequence numbers."""

    def __init__(self, redis: aioredis.Redis, names: Names, *, source: str = "test-timed") -> None:
        self.redis = redis
        self.names = names
        self.source = source
        self.seq = 0

    async def transfer_event(self, payload: Payload, *, at: float) -> None:
        self.seq += 1
        event = wrap(payload, source=self.source, seq=self.seq, time=at)
        await self.redis.publish(self.names.transfer_events, codec.encode(event))
