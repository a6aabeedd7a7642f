"""Applies a batch of CHAT / MEMORY events inside the runtime's transaction: fold the
events into per-source outcomes (plan.py), chunk the new texts, store. Fast on purpose:
no model runs here; new chunks are queued and the embedding pump embeds them after COMMIT
(the queue row commits with the chunk and the inbox row, so nothing is lost). A memory
whose chunks all reused known vectors is complete at once: its engram.embedding.ready
goes to the outbox in this transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from contracts.chat import FileUploaded
from contracts.embedding import SourceType
from services.embedder import repo
from services.embedder.active_model import ActiveModel
from services.embedder.announce import Announcer
from services.embedder.knowledge import cover_uploads
from services.embedder.logic import Chunk
from services.embedder.plan import Event, SourceKey, changes_of, fold
from services.runtime.db import Connection


@dataclass
class ApplyStats:
    sources: int = 0  # sources written (created, changed or deleted)
    chunks: int = 0  # chunks stored
    reused: int = 0  # chunks that got the vector of an equal text at once
    queued: int = 0  # chunks queued for the model


@dataclass
class SourceWriter:
    """The ``ApplyBatch`` of every consumer of the embedder."""

    active: ActiveModel
    announcer: Announcer
    stats: ApplyStats = field(default_factory=ApplyStats)

    async def __call__(self, conn: Connection, events: Sequence[Event]) -> Mapping[UUID, str]:
        roles = self.active.settings.embed_roles
        changes = [c for e in events for c in changes_of(e, roles)]
        keys = list(dict.fromkeys(c.key for c in changes))
        plan = fold(changes, await repo.load_states(conn, keys))
        writes = list(plan.writes.values())
        if writes:
            await repo.save_sources(conn, writes)
            self.stats.sources += len(writes)
        rechunk = [w for w in writes if w.rechunk]
        if rechunk:
            texts = [w for w in rechunk if w.text]
            pieces = self.active.chunk([w.text or "" for w in texts])
            chunks: dict[SourceKey, list[Chunk]] = {
                w.key: c for w, c in zip(texts, pieces, strict=True)
            }
            model_id = self.active.model.model_id
            done = await repo.replace_chunks(conn, rechunk, chunks, model_id)
            self.stats.chunks += done.inserted
            self.stats.reused += done.reused
            self.stats.queued += done.queued
            memories = [
                repo.MemoryKey(w.key.tenant_id, w.key.source_id)
                for w in rechunk
                if w.key.source_type is SourceType.memory
            ]
            if memories:
                await self.announcer.memories(conn, memories, model_id)
        uploads = [e for e in events if isinstance(e, FileUploaded)]
        if uploads:  # the agents' file sources that cover them get a copy
            await cover_uploads(conn, self.active, uploads)
        return plan.retry
