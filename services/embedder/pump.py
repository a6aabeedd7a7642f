"""The embedding pump: queued chunks -> model batches -> vectors committed.

Three stages joined by one-slot queues, so each overlaps the others:

  gather   leases queued chunks (woken by a PostgreSQL NOTIFY at the commit that queued
           them); while the model is busy it keeps filling the next batch, while the model
           is idle it hands a batch over once full or ``model_max_wait_s`` after its first
           chunk, so one event alone is embedded at once and a backlog makes full batches;
  encode   the encoder thread; a text whose vector is known (same text of the tenant, in
           the database or the recent-vector cache) is not encoded again, nor twice in one
           batch;
  write    one transaction stores the vectors and drops the queue rows (and outboxes the
           memories now complete), while the model encodes the next batch.

A chunk leased by a worker that dies is embedded by another after ``lease_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import numpy as np

from services.embedder import repo, repo_queue
from services.embedder.logic import length_batches
from services.embedder.model import Encoder
from services.embedder.settings import EmbedderSettings
from services.runtime.db import ALL_TENANTS, scope_tenant
from services.runtime.errors import describe

log = logging.getLogger("engram.embedder.pump")
MAX_ATTEMPTS = 5


class VectorCache:
    """Recently embedded vectors by (model id, text hash): an LRU of bounded size."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()

    def get(self, model_id: str, digest: str) -> np.ndarray | None:
        value = self._items.get((model_id, digest))
        if value is not None:
            self._items.move_to_end((model_id, digest))
        return value

    def put(self, model_id: str, digest: str, vector: np.ndarray) -> None:
        if self._size <= 0:
            return
        self._items[(model_id, digest)] = vector
        self._items.move_to_end((model_id, digest))
        while len(self._items) > self._size:
            self._items.popitem(last=False)


@dataclass
class PumpStats:
    batches: int = 0
    chunks: int = 0  # vectors written
    encoded: int = 0  # texts the model encoded
    known: int = 0  # chunks whose vector was known (not encoded)
    last_batch: int = 0
    encode_s: float = 0.0  # time the model spent on the pump's batches
    errors: int = 0


@dataclass
class _Batch:
    items: list[repo_queue.Claimed]
    model_id: str = ""
    vectors: list[np.ndarray | None] = field(default_factory=list)


class Pump:
    def __init__(
        self,
        pool: asyncpg.Pool,
        encoder: Encoder,
        settings: EmbedderSettings,
        on_memories_ready: Callable[[], Awaitable[None]],
    ) -> None:
        self._pool = pool
        self._encoder = encoder
        self._settings = settings
        self._on_memories_ready = on_memories_ready
        self.cache = VectorCache(settings.cache_size)
        self.stats = PumpStats()
        self.token = uuid.uuid4()  # this pump's leases
        self._tick = asyncio.Event()  # new work was queued, or the model became idle
        self._to_encode: asyncio.Queue[_Batch | None] = asyncio.Queue(maxsize=1)
        self._to_write: asyncio.Queue[_Batch | None] = asyncio.Queue(maxsize=1)
        self._encoding = False
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    def wake(self) -> None:
        self._tick.set()

    @property
    def idle(self) -> bool:
        return not self._encoding and self._to_encode.empty()

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._gather(), name="embedder-gather"),
            asyncio.create_task(self._encode(), name="embedder-encode"),
            asyncio.create_task(self._write(), name="embedder-write"),
        ]
        self.wake()

    async def stop(self, timeout_s: float) -> None:
        """Stop leasing; the batches in flight are encoded and written (within the
        timeout), the rest is given back."""
        self._stopping = True
        self.wake()
        try:
            await asyncio.wait_for(asyncio.gather(*self._tasks), timeout_s)
        except TimeoutError:
            log.error("embedding pump did not drain in %ss; leases expire on their own", timeout_s)
            for task in self._tasks:
                task.cancel()

    # --- gather ----------------------------------------------------------------------

    async def _gather(self) -> None:
        s = self._settings
        try:
            while not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._tick.wait(), s.poll_s)
                self._tick.clear()
                if self._stopping:
                    break
                size = max(s.gather_max, s.model_batch_size)
                items = await self._claim(size)
                if not items:
                    continue
                deadline = time.monotonic() + s.model_max_wait_s
                while len(items) < size and not self._stopping:
                    remaining = deadline - time.monotonic()
                    if self.idle and remaining <= 0:
                        break
                    self._tick.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            self._tick.wait(), max(remaining, 0.001) if self.idle else s.poll_s
                        )
                    items += await self._claim(size - len(items))
                await self._to_encode.put(_Batch(items))
        finally:
            await self._to_encode.put(None)

    async def _claim(self, limit: int) -> list[repo_queue.Claimed]:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await scope_tenant(conn, ALL_TENANTS)
                return await repo_queue.claim(
                    conn, limit, self._settings.lease_s, self.token, MAX_ATTEMPTS
                )
        except Exception as exc:  # database away: try again on the next tick
            self.stats.errors += 1
            log.warning("could not lease queued chunks: %s", describe(exc))
            await asyncio.sleep(1.0)
            return []

    # --- encode ----------------------------------------------------------------------

    async def _encode(self) -> None:
        while (batch := await self._to_encode.get()) is not None:
            self._encoding = True
            try:
                await self._embed(batch)
            except Exception as exc:
                self.stats.errors += 1
                log.error("could not embed %d chunks: %s", len(batch.items), describe(exc))
                await self._release(batch)
                continue
            finally:
                self._encoding = False
                self.wake()
            await self._to_write.put(batch)
        await self._to_write.put(None)

    async def _embed(self, batch: _Batch) -> None:
        model_id = self._encoder.model.model_id
        known = await self._known(model_id, batch.items)
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
                *(self._encoder.encode([todo[digests[i]].text for i in g]) for g in groups)
            )
            self.stats.encode_s += time.perf_counter() - started
            self.stats.encoded += len(todo)
            if any(model.model_id != model_id for model, _ in done):  # switched: again
                return await self._embed(batch)
            for group, (_, vectors) in zip(groups, done, strict=True):
                fresh.update((digests[i], v) for i, v in zip(group, vectors, strict=True))
            for digest, vector in fresh.items():
                self.cache.put(model_id, digest, vector)
        self.stats.known += len(batch.items) - len(todo)
        batch.model_id = model_id
        batch.vectors = [known.get(i.content_hash, fresh.get(i.content_hash)) for i in batch.items]

    async def _known(self, model_id: str, items: list[repo_queue.Claimed]) -> dict[str, np.ndarray]:
        known: dict[str, np.ndarray] = {}
        ask: set[tuple[str, str]] = set()
        for item in items:
            cached = self.cache.get(model_id, item.content_hash)
            if cached is not None:
                known[item.content_hash] = cached
            else:
                ask.add((item.tenant_id, item.content_hash))
        if ask:
            async with self._pool.acquire() as conn, conn.transaction():
                await scope_tenant(conn, ALL_TENANTS)
                found = await repo_queue.known_vectors(conn, model_id, sorted(ask))
            for (_, digest), vector in found.items():
                known[digest] = vector
        return known

    # --- write -----------------------------------------------------------------------

    async def _write(self) -> None:
        while (batch := await self._to_write.get()) is not None:
            for attempt in range(1, 4):
                try:
                    await self._store(batch)
                    break
                except Exception as exc:  # kept leased: embedded again after lease_s
                    self.stats.errors += 1
                    log.warning(
                        "writing %d vectors failed (attempt %d): %s",
                        len(batch.items),
                        attempt,
                        describe(exc),
                    )
                    await asyncio.sleep(0.5 * attempt)

    async def _store(self, batch: _Batch) -> None:
        pairs = [(i, v) for i, v in zip(batch.items, batch.vectors, strict=True) if v is not None]
        memories = sorted({i.source_id for i, _ in pairs if i.source_type == "memory"})
        async with self._pool.acquire() as conn, conn.transaction():
            await scope_tenant(conn, ALL_TENANTS)
            await repo_queue.write_vectors(
                conn,
                batch.model_id,
                [i.chunk_id for i, _ in pairs],
                [v for _, v in pairs],
                self.token,
            )
            ready = (
                await repo.queue_ready_memories(conn, memories, batch.model_id) if memories else 0
            )
        self.stats.batches += 1
        self.stats.chunks += len(pairs)
        self.stats.last_batch = len(pairs)
        if ready:
            await self._on_memories_ready()

    async def _release(self, batch: _Batch) -> None:
        with contextlib.suppress(Exception):
            async with self._pool.acquire() as conn:
                await repo_queue.release(conn, self.token, [i.chunk_id for i in batch.items])
