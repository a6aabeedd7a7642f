"""The Grafana dashboard of engram (``deploy/grafana/engram.json``), built here so that
every query names a metric ``metrics.py`` exports (a unit test holds it to the list in
docs/operations.md).

Every panel is per worker (``service``): one Prometheus series per replica, summed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

Dashboard = dict[str, Any]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: tuple[tuple[str, str], ...]  # (PromQL, legend)
    description: str = ""


def _rate(metric: str) -> str:
    return f'sum by (service) (rate({metric}{{service=~"$service"}}[$__rate_interval]))'


def _quantile(q: float, metric: str, by: str = "service") -> str:
    return (
        f"histogram_quantile({q}, sum by ({by}, le) "
        f'(rate({metric}_bucket{{service=~"$service"}}[$__rate_interval])))'
    )


PANELS: tuple[Panel, ...] = (
    Panel(
        "Throughput: events applied",
        "ops",
        ((_rate("engram_events_applied_total"), "{{service}}"),),
        "Events whose effects committed, per second.",
    ),
    Panel(
        "Consumer lag (pending)",
        "short",
        (
            (
                'max by (stream, consumer) (engram_consumer_pending{service=~"$service"})',
                "{{stream}}/{{consumer}}",
            ),
        ),
        "Messages of the stream not delivered to the durable consumer yet: what KEDA "
        "scales on. Every replica reports the same consumer, hence max.",
    ),
    Panel(
        "Unacked and redelivered",
        "short",
        (
            (
                'max by (stream, consumer) (engram_consumer_ack_pending{service=~"$service"})',
                "unacked {{stream}}/{{consumer}}",
            ),
            (
                'max by (stream, consumer) (engram_consumer_redelivered{service=~"$service"})',
                "redelivered {{stream}}/{{consumer}}",
            ),
        ),
    ),
    Panel(
        "Dead letters",
        "short",
        (
            (
                "sum by (service) (increase(engram_events_dead_lettered_total"
                '{service=~"$service"}[$__rate_interval]))',
                "{{service}}",
            ),
        ),
        "Events sent to the DLQ (invalid, poison, exhausted): `engram dlq list` says which.",
    ),
    Panel(
        "Duplicates and retries",
        "ops",
        (
            (_rate("engram_events_duplicate_total"), "duplicate {{service}}"),
            (_rate("engram_events_retried_total"), "retried {{service}}"),
        ),
    ),
    Panel(
        "Commit latency p50 / p99",
        "s",
        (
            (_quantile(0.5, "engram_commit_seconds"), "p50 {{service}}"),
            (_quantile(0.99, "engram_commit_seconds"), "p99 {{service}}"),
        ),
        "One batch's transaction and acks; a database outage the batch waits out is inside.",
    ),
    Panel(
        "Batch size p50",
        "short",
        ((_quantile(0.5, "engram_batch_size"), "{{service}}"),),
    ),
    Panel(
        "Query latency p50 / p99",
        "s",
        (
            (_quantile(0.5, "engram_query_seconds", "subject"), "p50 {{subject}}"),
            (_quantile(0.99, "engram_query_seconds", "subject"), "p99 {{subject}}"),
        ),
    ),
    Panel(
        "Queries and errors",
        "reqps",
        (
            (
                'sum by (subject) (rate(engram_queries_total{service=~"$service"}'
                "[$__rate_interval]))",
                "{{subject}}",
            ),
            (
                'sum by (subject, code) (rate(engram_query_errors_total{service=~"$service"}'
                "[$__rate_interval]))",
                "error {{subject}} {{code}}",
            ),
        ),
    ),
    Panel(
        "Embedder: texts encoded per second",
        "ops",
        (
            (
                "sum(rate(engram_embed_texts_total[$__rate_interval]))",
                "texts/s",
            ),
            (
                "sum(rate(engram_embed_vectors_written_total[$__rate_interval]))",
                "vectors written/s",
            ),
        ),
    ),
    Panel(
        "Outbox depth",
        "short",
        (('max by (service) (engram_outbox_depth{service=~"$service"})', "{{service}}"),),
        "Committed events not published yet; shared by the replicas, hence max.",
    ),
    Panel(
        "Components down",
        "short",
        (
            (
                'count by (service, component) (engram_component_up{service=~"$service"} == 0)',
                "{{service}} {{component}}",
            ),
            (
                'max by (service) (engram_database_unreachable{service=~"$service"})',
                "database unreachable {{service}}",
            ),
        ),
        "Parts of a worker that report themselves not working; empty is good.",
    ),
)


def _panel(index: int, panel: Panel) -> dict[str, Any]:
    width, height = 12, 8
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"x": (index % 2) * width, "y": (index // 2) * height, "w": width, "h": height},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
            }
            for i, (expr, legend) in enumerate(panel.queries)
        ],
    }


def dashboard() -> Dashboard:
    return {
        "uid": "engram-workers",
        "title": "engram workers",
        "tags": ["engram"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                },
                {
                    "name": "service",
                    "type": "query",
                    "label": "worker",
                    "datasource": DATASOURCE,
                    "query": "label_values(engram_component_up, service)",
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                    "refresh": 2,
                },
            ]
        },
        "panels": [_panel(i, panel) for i, panel in enumerate(PANELS)],
    }


def queried_metrics(board: Dashboard) -> set[str]:
    """The engram_* metric names a dashboard's queries read (``_bucket`` of a histogram
    is its name)."""
    names: set[str] = set()
    for panel in board["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"\bengram_[a-z_]+", target["expr"]):
                names.add(name.removesuffix("_bucket"))
    return names
