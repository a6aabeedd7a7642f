"""Applies a batch of CHAT / MEMORY events inside the runtime's transaction: fold the
events into per-source outcomes (plan.py), chunk the new texts, store. Fast on purpose:
no model runs here; new chunks are queued and the embedding pump embeds them after COMMIT
(the queue row commits with the chunk and the inbox row, so nothing is lost)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

from services.embedder import repo
from services.embedder.engine import Engine
from services.embedder.logic import Chunk
from services.embedder.plan import Event, SourceKey, changes_of, fold
from services.runtime.db import ALL_TENANTS, Connection, scope_tenant
from services.runtime.pipeline import ApplyBatch


@dataclass
class ApplyStats:
    sources: int = 0  # sources written (created, changed or deleted)
    chunks: int = 0  # chunks stored
    reused: int = 0  # chunks that got the vector of an equal text at once
    queued: int = 0  # chunks queued for the model


def make_apply(engine: Engine, stats: ApplyStats) -> ApplyBatch[Event]:
    async def apply(conn: Connection, events: Sequence[Event]) -> Mapping[UUID, str]:
        await scope_tenant(conn, ALL_TENANTS)
        changes = [c for e in events for c in changes_of(e, engine.settings.embed_roles)]
        keys = list(dict.fromkeys(c.key for c in changes))
        plan = fold(changes, await repo.load_states(conn, keys))
        writes = list(plan.writes.values())
        if writes:
            await repo.save_sources(conn, writes)
            stats.sources += len(writes)
        rechunk = [w for w in writes if w.rechunk]
        if rechunk:
            texts = [w for w in rechunk if w.text]
            pieces = engine.chunk([w.text or "" for w in texts])
            chunks: dict[SourceKey, list[Chunk]] = {
                w.key: c for w, c in zip(texts, pieces, strict=True)
            }
            done = await repo.replace_chunks(conn, rechunk, chunks, engine.model.model_id)
            stats.chunks += done.inserted
            stats.reused += done.reused
            stats.queued += done.queued
        return plan.retry

    return apply
