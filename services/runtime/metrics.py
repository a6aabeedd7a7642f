"""A worker's Prometheus metrics: what it counts (``telemetry.Stats``, ``QueryStats``),
what its components say of themselves (health, and the measures of a ``Measured`` one)
and what the server says of its durable consumers (their lag).

``measure_worker`` gathers them as ``Measure`` samples; every part that has to ask
something (NATS, PostgreSQL, a component) is bounded by ``PART_TIMEOUT_S``, so a slow
server leaves its part out of one scrape (``engram_scrape_part_up`` says which) instead of
hanging it. ``exposition`` renders them in the Prometheus text format through
prometheus_client's metric families, on a registry of its own (never the global one:
several workers may run in one process, as in `engram dev` and the tests).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from services.runtime.errors import describe
from services.runtime.telemetry import Measure, Measured

if TYPE_CHECKING:
    from services.runtime.consumer import PullConsumer
    from services.runtime.worker import Worker

log = logging.getLogger("engram.metrics")
PREFIX = "engram_"
PART_TIMEOUT_S = 2.0


async def measure_worker(worker: Worker, timeout_s: float = PART_TIMEOUT_S) -> list[Measure]:
    """Every measure of the worker, with its ``service`` label."""
    service = worker.settings.service
    measures = [*_counted(worker), *_health(worker)]
    parts: list[tuple[str, Callable[[], Awaitable[Sequence[Measure]]]]] = [
        (f"lag:{c.spec.stream.name}:{c.spec.durable}", _lag_of(c)) for c in worker.consumers
    ]
    parts += [
        (component.name, component.measures)
        for component in worker.components
        if isinstance(component, Measured)
    ]
    results = await asyncio.gather(*(_bounded(fn, timeout_s) for _, fn in parts))
    for (part, _), (ok, got) in zip(parts, results, strict=True):
        measures.append(
            Measure(
                "scrape_part_up",
                "1 when this part of the worker answered the scrape in time, else 0.",
                "gauge",
                1.0 if ok else 0.0,
                {"part": part},
            )
        )
        if not ok:
            log.warning("metrics: %s left out of the scrape: %s", part, got)
        else:
            measures += got
    return [
        Measure(m.name, m.help, m.kind, m.value, {"service": service, **m.labels}, m.histogram)
        for m in measures
    ]


async def _bounded(
    fn: Callable[[], Awaitable[Sequence[Measure]]], timeout_s: float
) -> tuple[bool, Any]:
    try:
        return True, list(await asyncio.wait_for(fn(), timeout_s))
    except TimeoutError:
        return False, f"no answer in {timeout_s}s"
    except Exception as exc:
        return False, describe(exc)


def _counted(worker: Worker) -> Iterator[Measure]:
    s = worker.stats
    yield Measure("events_applied", "Events whose effects committed.", "counter", s.applied)
    yield Measure(
        "events_duplicate",
        "Events acked without effect: their event id was applied already (inbox).",
        "counter",
        s.duplicates,
    )
    yield Measure(
        "events_retried",
        "Deliveries returned (nak) after a transient failure, to come again later.",
        "counter",
        s.retried,
    )
    yield Measure(
        "events_dead_lettered",
        "Events sent to the DLQ (invalid, poison or exhausted).",
        "counter",
        s.dead,
    )
    yield Measure("batch_size", "Messages per pulled batch.", "histogram", histogram=s.batch_sizes)
    yield Measure(
        "commit_seconds",
        "Time to commit one batch's transaction and ack its messages.",
        "histogram",
        histogram=s.commit_seconds,
    )
    yield Measure(
        "database_outages",
        "Times the database was found unreachable and came back.",
        "counter",
        s.database_outages,
    )
    yield Measure(
        "database_unreachable",
        "1 while the database is unreachable (the worker holds its batch, pulls nothing).",
        "gauge",
        0.0 if s.database_unreachable_since is None else 1.0,
    )
    for subject, q in sorted(worker.queries.subjects.items()):
        yield Measure(
            "queries",
            "Requests answered, per subject (with an error or not).",
            "counter",
            q.answered,
            {"subject": subject},
        )
        yield Measure(
            "query_seconds",
            "Time to answer one request, per subject (requests that break the contract "
            "are refused before they are timed).",
            "histogram",
            labels={"subject": subject},
            histogram=q.seconds,
        )
        for code, count in sorted(q.errors.items()):
            yield Measure(
                "query_errors",
                "Requests answered with an error, per subject and error code.",
                "counter",
                count,
                {"subject": subject, "code": code},
            )


def _health(worker: Worker) -> Iterator[Measure]:
    for health in worker.health():
        yield Measure(
            "component_up",
            "1 when the part of the worker (database, each pull loop, each component) "
            "reports itself working, else 0.",
            "gauge",
            1.0 if health.ok else 0.0,
            {"component": health.name},
        )


def _lag_of(consumer: PullConsumer) -> Callable[[], Awaitable[Sequence[Measure]]]:
    async def lag() -> list[Measure]:
        info = await consumer.info()
        labels = {"stream": consumer.spec.stream.name, "consumer": consumer.spec.durable}
        return [
            Measure(
                "consumer_pending",
                "Messages of the stream the durable consumer has not delivered yet (lag).",
                "gauge",
                float(info.num_pending or 0),
                labels,
            ),
            Measure(
                "consumer_ack_pending",
                "Messages delivered to the consumer and not acked yet.",
                "gauge",
                float(info.num_ack_pending or 0),
                labels,
            ),
            Measure(
                "consumer_redelivered",
                "Messages delivered more than once and not acked yet.",
                "gauge",
                float(info.num_redelivered or 0),
                labels,
            ),
        ]

    return lag


def families(measures: Iterable[Measure]) -> list[Metric]:
    """Prometheus metric families, one per name (``engram_`` prefixed)."""
    grouped: dict[str, list[Measure]] = {}
    for m in measures:
        grouped.setdefault(m.name, []).append(m)
    out: list[Metric] = []
    for name, group in grouped.items():
        first = group[0]
        keys = sorted({key for m in group for key in m.labels})
        full = PREFIX + name
        family: Metric
        if first.kind == "counter":
            family = CounterMetricFamily(full, first.help, labels=keys)
        elif first.kind == "gauge":
            family = GaugeMetricFamily(full, first.help, labels=keys)
        else:
            family = HistogramMetricFamily(full, first.help, labels=keys)
        for m in group:
            if m.kind != first.kind:
                raise ValueError(f"{full}: measured as both {first.kind} and {m.kind}")
            values = [m.labels.get(key, "") for key in keys]
            if isinstance(family, HistogramMetricFamily):
                if m.histogram is None:
                    raise ValueError(f"{full}: a histogram measure without its histogram")
                buckets = [
                    (_bound(bound), float(count)) for bound, count in m.histogram.cumulative()
                ]
                family.add_metric(values, buckets, m.histogram.sum)
            else:
                assert isinstance(family, CounterMetricFamily | GaugeMetricFamily)
                family.add_metric(values, m.value)
        out.append(family)
    return out


def _bound(bound: float) -> str:
    """A bucket's ``le`` as Prometheus writes it (``+Inf``, ``0.5``, ``10.0``)."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


class _Snapshot:
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def exposition(measures: Iterable[Measure], *, process: bool = True) -> bytes:
    """The Prometheus text format (0.0.4) of ``measures`` and, with ``process``, of the
    process (``process_cpu_seconds_total``, ``process_resident_memory_bytes``, open fds:
    prometheus_client's, read from /proc on Linux, nothing elsewhere)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(families(measures)))
    if process:
        ProcessCollector(registry=registry)
    return generate_latest(registry)
