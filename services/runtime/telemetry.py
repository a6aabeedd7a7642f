"""Counters and histograms a worker keeps about its own work, read by `engram dev` and by
the metrics endpoint (``metrics.py``), and the shape a component's own measures take."""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

# Upper bounds (inclusive, Prometheus's "le") of the buckets; +Inf is implied.
SECONDS_BOUNDS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
LONG_SECONDS_BOUNDS: tuple[float, ...] = (
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
)  # fmt: skip
SIZE_BOUNDS: tuple[float, ...] = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


@dataclass
class Histogram:
    """Fixed buckets: ``counts[i]`` observations fell in ``(bounds[i-1], bounds[i]]``, the
    last one above every bound (+Inf). Cheap enough to observe on every batch."""

    bounds: tuple[float, ...] = SECONDS_BOUNDS
    counts: list[int] = field(default_factory=list)
    sum: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError("histogram bounds must be strictly increasing")
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), ending with (+Inf, count)."""
        total, out = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out


def seconds_histogram() -> Histogram:
    return Histogram(SECONDS_BOUNDS)


def size_histogram() -> Histogram:
    return Histogram(SIZE_BOUNDS)


@dataclass
class Stats:
    applied: int = 0
    duplicates: int = 0
    retried: int = 0
    dead: int = 0
    batches: int = 0
    last_batch: int = 0
    last_batch_ms: float = 0.0
    # Set while the database is unreachable (time.time() it was found so): the worker
    # holds its batch and pulls nothing; health shows it.
    database_unreachable_since: float | None = None
    database_outages: int = 0
    batch_sizes: Histogram = field(default_factory=size_histogram)
    commit_seconds: Histogram = field(default_factory=seconds_histogram)

    def batch_done(self, size: int, elapsed_s: float, commit_s: float | None = None) -> None:
        """A batch of ``size`` messages is over, ``elapsed_s`` after it was fetched, its
        transaction (and acks) having taken ``commit_s``."""
        self.batches += 1
        self.last_batch = size
        self.last_batch_ms = round(elapsed_s * 1000, 2)
        self.batch_sizes.observe(size)
        self.commit_seconds.observe(elapsed_s if commit_s is None else commit_s)


Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class Measure:
    """One sample of one metric: ``name`` without the ``engram_`` prefix (and, for a
    counter, without ``_total``); a histogram carries its ``histogram`` instead of a value."""

    name: str
    help: str
    kind: Kind
    value: float = 0.0
    labels: Mapping[str, str] = field(default_factory=dict)
    histogram: Histogram | None = None


@runtime_checkable
class Measured(Protocol):
    """A component with measures of its own, added to its worker's metrics."""

    async def measures(self) -> Sequence[Measure]: ...
