"""What becomes of a batch the embedding pump handed over (``pump.py`` gathers them):

  encode  on the encoder thread; a text whose vector is known (same text of the tenant,
          in the database or the recent-vector cache) is not encoded again, nor twice in
          one batch;
  write   one transaction stores the vectors, drops the queue rows and adds the
          engram.embedding.ready of each memory now complete to the outbox.

A batch that cannot be encoded is given back (``release``); one that cannot be written
stays leased, and is embedded again after ``lease_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field

import asyncpg
import numpy as np

from services.embedder import repo, repo_queue
from services.embedder.active_model import ActiveModel
from services.embedder.announce import Announcer
from services.embedder.logic import length_batches
from services.embedder.settings import EmbedderSettings
from services.embedder.vector_cache import VectorCache
from services.runtime.db import act_for_all_tenants
from services.runtime.errors import describe

# The pump's logger: what happens to its batches is the pump's to report.
log = logging.getLogger("engram.embedder.pump")


@dataclass
class PumpStats:
    """The pump's counters (``Pump.stats``), here beside the batches most of them count."""

    batches: int = 0
    chunks: int = 0  # vectors written
    encoded: int = 0  # texts the model encoded
    known: int = 0  # chunks whose vector was known (not encoded)
    last_batch: int = 0
    encode_s: float = 0.0  # time the model spent on the pump's batches
    errors: int = 0
    given_up: int = 0  # queued chunks that lost MAX_ATTEMPTS leases (last count)


@dataclass
class Batch:
    items: list[repo_queue.Claimed]
    model_id: str = ""
    vectors: list[np.ndarray | None] = field(default_factory=list)


class BatchEmbedder:
    """Encodes and writes the pump's batches, counting in the pump's stats."""

    def __init__(
        self,
        active: ActiveModel,
        settings: EmbedderSettings,
        announcer: Announcer,
        *,
        cache: VectorCache,
        stats: PumpStats,
        token: uuid.UUID,
    ) -> None:
        self._active = active
        self._settings = settings
        self._announcer = announcer
        self._cache = cache
        self._stats = stats
        self._token = token  # the pump's leases

    # --- encode ----------------------------------------------------------------------

    async def embed(self, pool: asyncpg.Pool, batch: Batch) -> None:
        model_id = self._active.encoder.model.model_id
        known = await self._known(pool, model_id, batch.items)
        todo: dict[str, repo_queue.Claimed] = {}  # digest -> a chunk: each text once
        for item in batch.items:
            if item.content_hash not in known:
                todo.setdefault(item.content_hash, item)
        fresh: dict[str, np.ndarray] = {}
        if todo:
            started = time.perf_counter()
            digests = list(todo)
            # Model batches of similar lengths (little padding), all queued at once (no
            # gap between them; a query still goes first).
            groups = length_batches(
                [c.tokens or len(c.text) for c in todo.values()],
                self._settings.model_batch_size,
            )
            done = await asyncio.gather(
                *(self._active.encoder.encode([todo[digests[i]].text for i in g]) for g in groups)
            )
            self._stats.encode_s += time.perf_counter() - started
            self._stats.encoded += len(todo)
            if any(model.model_id != model_id for model, _ in done):  # switched: again
                return await self.embed(pool, batch)
            for group, (_, vectors) in zip(groups, done, strict=True):
                fresh.update((digests[i], v) for i, v in zip(group, vectors, strict=True))
            for digest, vector in fresh.items():
                self._cache.put(model_id, digest, vector)
        self._stats.known += len(batch.items) - len(todo)
        batch.model_id = model_id
        batch.vectors = [known.get(i.content_hash, fresh.get(i.content_hash)) for i in batch.items]

    async def _known(
        self, pool: asyncpg.Pool, model_id: str, items: list[repo_queue.Claimed]
    ) -> dict[str, np.ndarray]:
        known: dict[str, np.ndarray] = {}
        ask: set[tuple[str, str]] = set()
        for item in items:
            cached = self._cache.get(model_id, item.content_hash)
            if cached is not None:
                known[item.content_hash] = cached
            else:
                ask.add((item.tenant_id, item.content_hash))
        if ask:
            async with pool.acquire() as conn, conn.transaction():
                await act_for_all_tenants(conn, self._settings.roles)
                found = await repo_queue.known_vectors(conn, model_id, sorted(ask))
            for (_, digest), vector in found.items():
                known[digest] = vector
        return known

    # --- write -----------------------------------------------------------------------

    async def write(self, pool: asyncpg.Pool, batch: Batch) -> None:
        for attempt in range(1, 4):
            try:
                await self._store(pool, batch)
                return
            except Exception as exc:  # kept leased: embedded again after lease_s
                self._stats.errors += 1
                log.warning(
                    "writing %d vectors failed (attempt %d): %s",
                    len(batch.items),
                    attempt,
                    describe(exc),
                )
                await asyncio.sleep(0.5 * attempt)

    async def _store(self, pool: asyncpg.Pool, batch: Batch) -> None:
        pairs = [(i, v) for i, v in zip(batch.items, batch.vectors, strict=True) if v is not None]
        memories = [
            repo.MemoryKey(i.tenant_id, i.source_id) for i, _ in pairs if i.source_type == "memory"
        ]
        async with pool.acquire() as conn, conn.transaction():
            await act_for_all_tenants(conn, self._settings.roles)
            await repo_queue.write_vectors(
                conn,
                batch.model_id,
                [i.chunk_id for i, _ in pairs],
                [v for _, v in pairs],
                self._token,
            )
            if memories:
                await self._announcer.memories(conn, memories, batch.model_id)
        self._stats.batches += 1
        self._stats.chunks += len(pairs)
        self._stats.last_batch = len(pairs)

    async def release(self, pool: asyncpg.Pool, items: list[repo_queue.Claimed]) -> None:
        with contextlib.suppress(Exception):
            async with pool.acquire() as conn:
                await repo_queue.release(conn, self._token, [i.chunk_id for i in items])
