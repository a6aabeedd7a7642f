"""Pure rules of the memory service: decay, recency, the search score, tokens, ids.

Decay (docs/memory.md): a memory loses ``decay_rate`` of its importance per day without
access, slowed by use: the effective rate is ``decay_rate / (1 + ln(1 + access_count))``.
Importance is decayed in steps (the decay step of a consolidation job) from the later of
the last decay and the last access, so steps compose: two steps of 5 days each give the
same importance as one step of 10 days.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

DAY_S = 86_400.0
CHARS_PER_TOKEN = 4  # the usual estimate for English text with GPT-style tokenizers
NAMESPACE = UUID("5b0c3c8e-7f1a-4e3b-9c2d-6a8f0e1d2c3b")  # engram memory ids


def estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def content_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def derived_id(*parts: object) -> UUID:
    """A stable id from its inputs: a job re-run after a crash makes the same memories."""
    return uuid.uuid5(NAMESPACE, "/".join(str(p) for p in parts))


def effective_rate(decay_rate: float, access_count: int) -> float:
    return decay_rate / (1.0 + math.log1p(max(access_count, 0)))


def days_between(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds() / DAY_S)


def decayed(
    importance: float,
    *,
    decay_rate: float,
    access_count: int,
    decayed_at: datetime,
    last_accessed_at: datetime | None,
    now: datetime,
) -> float:
    """Importance at ``now`` (the SQL of the decay step computes the same)."""
    since = max(decayed_at, last_accessed_at) if last_accessed_at else decayed_at
    rate = effective_rate(decay_rate, access_count)
    return float(importance * (1.0 - rate) ** days_between(since, now))


def recency(last_used: datetime, now: datetime, half_life_days: float) -> float:
    return float(0.5 ** (days_between(last_used, now) / half_life_days))


@dataclass(frozen=True)
class Weights:
    similarity: float
    importance: float
    recency: float
    half_life_days: float

    def score(self, similarity: float, importance: float, recency_: float) -> float:
        return self.similarity * similarity + self.importance * importance + self.recency * recency_


def combined_importance(values: Iterable[float]) -> float:
    """Importance of a merged memory: each source is independent evidence that it matters
    (noisy OR), so duplicates reinforce and the result is never below the strongest."""
    keep = 1.0
    for value in values:
        keep *= 1.0 - min(max(value, 0.0), 1.0)
    return 1.0 - keep


def working_to_expire(
    rows: list[tuple[UUID, datetime]], now: datetime, ttl_days: float, capacity: int
) -> list[UUID]:
    """Working memories (id, last used) past their TTL, or beyond the agent's capacity
    counting from the most recently used."""
    ordered = sorted(rows, key=lambda r: (r[1], str(r[0])), reverse=True)
    return [
        memory_id
        for rank, (memory_id, last_used) in enumerate(ordered)
        if rank >= capacity or days_between(last_used, now) > ttl_days
    ]
