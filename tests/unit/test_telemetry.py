"""The worker's histograms and the Prometheus text they are exposed as."""

from __future__ import annotations

import asyncio
import math
import time
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.runtime.component import Health
from services.runtime.metrics import exposition, measure_worker
from services.runtime.router import QueryStats
from services.runtime.telemetry import Histogram, Measure, Stats


def test_a_histogram_counts_each_value_in_the_first_bucket_that_holds_it() -> None:
    h = Histogram((1.0, 5.0, 10.0))
    for value in (0.5, 1.0, 1.01, 5.0, 7, 10.0, 11, 1e9):
        h.observe(value)
    assert h.counts == [2, 2, 2, 2]  # (..1], (1..5], (5..10], (10..+Inf)
    assert h.count == 8
    assert h.sum == pytest.approx(0.5 + 1.0 + 1.01 + 5.0 + 7 + 10.0 + 11 + 1e9)
    assert h.cumulative() == [(1.0, 2), (5.0, 4), (10.0, 6), (math.inf, 8)]


def test_a_histogram_refuses_bounds_out_of_order() -> None:
    with pytest.raises(ValueError, match="increasing"):
        Histogram((1.0, 1.0, 2.0))
    with pytest.raises(ValueError, match="increasing"):
        Histogram((2.0, 1.0))


def test_a_batch_done_feeds_the_batch_size_and_commit_histograms() -> None:
    stats = Stats()
    stats.batch_done(3, 0.2, 0.05)
    stats.batch_done(500, 1.0)  # no commit time given: the batch's
    assert stats.batches == 2 and stats.last_batch == 500
    assert stats.batch_sizes.count == 2 and stats.batch_sizes.sum == 503
    assert stats.commit_seconds.sum == pytest.approx(1.05)


def test_the_exposition_parses_with_prometheus_own_parser() -> None:
    h = Histogram((0.1, 1.0))
    h.observe(0.05)
    h.observe(0.5)
    h.observe(3.0)
    measures = [
        Measure("events_applied", "Applied.", "counter", 7, {"service": "ingest"}),
        Measure("events_applied", "Applied.", "counter", 2, {"service": "audit"}),
        Measure("database_unreachable", "Down.", "gauge", 1, {"service": "ingest"}),
        Measure(
            "query_seconds",
            "Latency.",
            "histogram",
            labels={"service": "memory", "subject": "query.memory.search"},
            histogram=h,
        ),
        Measure("label_quoting", 'A "quoted" help.', "gauge", 1, {"detail": 'a "b"\n\\c'}),
    ]
    text = exposition(measures).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["engram_events_applied"].type == "counter"
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert samples[("engram_events_applied_total", (("service", "ingest"),))] == 7
    assert samples[("engram_events_applied_total", (("service", "audit"),))] == 2
    assert samples[("engram_database_unreachable", (("service", "ingest"),))] == 1
    memory = (("service", "memory"), ("subject", "query.memory.search"))
    assert samples[("engram_query_seconds_bucket", (("le", "0.1"), *memory))] == 1
    assert samples[("engram_query_seconds_bucket", (("le", "1.0"), *memory))] == 2
    assert samples[("engram_query_seconds_bucket", (("le", "+Inf"), *memory))] == 3
    assert samples[("engram_query_seconds_count", memory)] == 3
    assert samples[("engram_query_seconds_sum", memory)] == pytest.approx(3.55)
    assert samples[("engram_label_quoting", (("detail", 'a "b"\n\\c'),))] == 1


def test_one_name_measured_as_two_kinds_is_refused() -> None:
    with pytest.raises(ValueError, match="both"):
        exposition([Measure("x", "X.", "counter", 1), Measure("x", "X.", "gauge", 1, {"a": "b"})])


class SlowConsumer:
    """A pull consumer whose server does not answer (a slow or unreachable NATS)."""

    def __init__(self) -> None:
        self.spec = SimpleNamespace(stream=SimpleNamespace(name="CHAT"), durable="ingest")

    async def info(self) -> object:
        await asyncio.sleep(30)
        raise AssertionError("never answered")


class Answers:
    name = "answers"

    async def measures(self) -> list[Measure]:
        return [Measure("outbox_depth", "Depth.", "gauge", 3)]

    def health(self) -> Health:
        return Health(self.name, True)


class Breaks(Answers):
    name = "breaks"

    async def measures(self) -> list[Measure]:
        raise RuntimeError("no database")


class Unmeasured:
    name = "quiet"

    def health(self) -> Health:
        return Health(self.name, False, "stuck")


async def test_a_slow_part_is_left_out_of_the_scrape_not_waited_for() -> None:
    stats = Stats(applied=4)
    worker: Any = SimpleNamespace(
        settings=SimpleNamespace(service="ingest"),
        stats=stats,
        queries=QueryStats(),
        consumers=[SlowConsumer()],
        components=[Answers(), Breaks(), Unmeasured()],
        health=lambda: [Health("database", True), Health("quiet", False, "stuck")],
    )
    started = time.monotonic()
    measures = await measure_worker(worker, timeout_s=0.2)
    assert time.monotonic() - started < 2
    found = {(m.name, tuple(sorted(m.labels.items()))): m.value for m in measures}
    assert found[("events_applied", (("service", "ingest"),))] == 4
    assert found[("outbox_depth", (("service", "ingest"),))] == 3
    up = {
        dict(labels)["part"]: value
        for (name, labels), value in found.items()
        if name == "scrape_part_up"
    }
    assert up == {"lag:CHAT:ingest": 0, "answers": 1, "breaks": 0}
    component = {
        dict(labels)["component"]: value
        for (name, labels), value in found.items()
        if name == "component_up"
    }
    assert component == {"database": 1, "quiet": 0}
    assert not any(name.startswith("consumer_") for name, _ in found)
    text = exposition(measures).decode()
    assert "engram_scrape_part_up" in text and "process_" in text
