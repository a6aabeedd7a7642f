"""Counters a worker keeps about its own work, read by `engram dev` (and, later, metrics)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("engram")


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

    def batch_done(self, size: int, elapsed_s: float) -> None:
        self.batches += 1
        self.last_batch = size
        self.last_batch_ms = round(elapsed_s * 1000, 2)


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
