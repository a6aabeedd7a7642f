"""The embedding pump: queued chunks -> model batches -> vectors committed.

Three stages, so each overlaps the others:

  gather   a Loop that leases queued chunks, woken by a PostgreSQL NOTIFY at the commit
           that queued them (or every ``poll_s``); while the model is busy it keeps filling
           the next batch, while the model is idle it hands a batch over once full or
           ``model_max_wait_s`` after its first chunk, so one event alone is embedded at
           once and a backlog makes full batches. At most one batch waits for the model
           while another is encoded;
  encode   the encoder thread; a text whose vector is known (same text of the tenant, in
           the database or the recent-vector cache) is not encoded again, nor twice in one
           batch;
  write    one transaction stores the vectors, drops the queue rows and adds the
           engram.embedding.ready of each memory now complete to the outbox, while the
           model encodes the next batch.

A chunk leased by a worker that dies is embedded by another after ``lease_s``.
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
from services.runtime.component import Health, NotStarted, WorkerContext
from services.runtime.db import act_for_all_tenants
from services.runtime.errors import describe
from services.runtime.loop import Loop
from services.runtime.telemetry import Measure

log = logging.getLogger("engram.embedder.pump")
MAX_ATTEMPTS = 5
GIVEN_UP_CHECK_S = 30.0
WAITING = 2  # batches handed to the encoder at most: one encoding, one next


@dataclass
class PumpStats:
    batches: int = 0
    chunks: int = 0  # vectors written
    encoded: int = 0  # texts the model encoded
    known: int = 0  # chunks whose vector was known (not encoded)
    last_batch: int = 0
    encode_s: float = 0.0  # time the model spent on the pump's batches
    errors: int = 0
    given_up: int = 0  # queued chunks that lost MAX_ATTEMPTS leases (last count)


@dataclass
class _Batch:
    items: list[repo_queue.Claimed]
    model_id: str = ""
    vectors: list[np.ndarray | None] = field(default_factory=list)


class Pump:
    """A component: the gather Loop and the batches it handed over."""

    name = "pump"

    def __init__(
        self, active: ActiveModel, settings: EmbedderSettings, announcer: Announcer
    ) -> None:
        self._active = active
        self._settings = settings
        self._announcer = announcer
        self.cache = VectorCache(settings.cache_size)
        self.stats = PumpStats()
        self.token = uuid.uuid4()  # this pump's leases
        self._leases = repo_queue.LeasePolicy(
            settings.lease_s, MAX_ATTEMPTS, settings.given_up_retry_s
        )
        self._given_up_checked = -GIVEN_UP_CHECK_S
        self._pool: asyncpg.Pool | None = None
        self._encoding = 0  # batches handed over and not encoded yet
        self._encoded = asyncio.Event()  # a batch was encoded: the model may be idle
        self._writing = asyncio.Lock()  # one write transaction at a time
        self._batches: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._gather = Loop(
            "embedding-pump", self.gather, every_s=settings.poll_s, channel=repo.NOTIFY_CHANNEL
        )

    @property
    def idle(self) -> bool:
        return self._encoding == 0

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise NotStarted("the embedding pump")
        return self._pool

    async def start(self, ctx: WorkerContext) -> None:
        self._pool = ctx.pool
        self._stopping = False
        await self._gather.start(ctx)  # its first step takes what was queued meanwhile

    async def stop(self) -> None:
        """Stop leasing; the batches in flight are encoded and written (within
        drain_timeout_s), the rest is given back or left to its lease."""
        self._stopping = True
        await self._gather.stop()
        if not self._batches:
            return
        timeout_s = self._settings.drain_timeout_s
        _, pending = await asyncio.wait(self._batches, timeout=timeout_s)
        if pending:
            log.error("embedding pump did not drain in %ss; leases expire on their own", timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)

    def health(self) -> Health:
        gather = self._gather.health()
        s = self.stats
        detail = f"{s.chunks} vectors in {s.batches} batches, {s.errors} errors; {gather.detail}"
        if s.given_up:
            detail += f"; {s.given_up} chunks given up after {MAX_ATTEMPTS} lost leases"
        return Health(self.name, gather.ok, detail)

    async def measures(self) -> list[Measure]:
        s = self.stats
        return [
            Measure(
                "embed_texts",
                "Texts the embedding model encoded (rate(): texts per second).",
                "counter",
                s.encoded,
            ),
            Measure("embed_vectors_written", "Chunk vectors written.", "counter", s.chunks),
            Measure(
                "embed_encode_seconds",
                "Time the model spent encoding the pump's batches.",
                "counter",
                s.encode_s,
            ),
            Measure("embed_errors", "Embedding batches that failed.", "counter", s.errors),
            Measure(
                "embed_given_up",
                f"Queued chunks that lost {MAX_ATTEMPTS} leases (their workers died holding "
                "them), waiting EMBEDDER_GIVEN_UP_RETRY_S before they are leased again.",
                "gauge",
                s.given_up,
            ),
        ]

    # --- gather ----------------------------------------------------------------------

    async def gather(self) -> bool:
        """One batch leased and handed to the encoder; whether more may be queued."""
        if self._stopping:
            return False
        s = self._settings
        await self._check_given_up()
        size = max(s.gather_max, s.model_batch_size)
        items = await self._claim(size)  # a failure: the Loop tries again after a backoff
        if not items:
            return False
        try:
            deadline = time.monotonic() + s.model_max_wait_s
            while len(items) < size and not self._stopping:
                self._encoded.clear()  # before looking: an encode ending now still wakes
                remaining = deadline - time.monotonic()
                if self.idle and remaining <= 0:
                    break
                await self._until_encoded(max(remaining, 0.001) if self.idle else s.poll_s)
                try:
                    items += await self._claim(size - len(items))
                except Exception as exc:  # hand over what was leased
                    self.stats.errors += 1
                    log.warning("could not lease more queued chunks: %s", describe(exc))
                    break
            while self._encoding >= WAITING:
                self._encoded.clear()
                if self._encoding >= WAITING:
                    await self._until_encoded(s.poll_s)
        except asyncio.CancelledError:  # stopping: not handed over, so given back
            await self._release(items)
            raise
        self._encoding += 1
        task = asyncio.create_task(self._process(_Batch(items)), name="embedder-batch")
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)
        return True

    async def _until_encoded(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._encoded.wait(), timeout_s)

    async def _claim(self, limit: int) -> list[repo_queue.Claimed]:
        async with self.pool.acquire() as conn, conn.transaction():
            await act_for_all_tenants(conn, self._settings.roles)
            return await repo_queue.claim(conn, limit, self.token, self._leases)

    async def _check_given_up(self) -> None:
        """Counts the chunks given up after MAX_ATTEMPTS lost leases (every
        GIVEN_UP_CHECK_S); says so at error when there are more than last time."""
        if time.monotonic() < self._given_up_checked + GIVEN_UP_CHECK_S:
            return
        self._given_up_checked = time.monotonic()
        async with self.pool.acquire() as conn, conn.transaction():
            await act_for_all_tenants(conn, self._settings.roles)
            count = await repo_queue.given_up(conn, MAX_ATTEMPTS)
        if count > self.stats.given_up:
            log.error(
                "%d queued chunks lost their lease %d times (workers died holding them): "
                "each is leased again %.0fs after its last lease ran out",
                count,
                MAX_ATTEMPTS,
                self._settings.given_up_retry_s,
            )
        self.stats.given_up = count

    # --- encode ----------------------------------------------------------------------

    async def _process(self, batch: _Batch) -> None:
        try:
            try:
                await self._embed(batch)
            finally:
                self._encoding -= 1
                self._encoded.set()
        except Exception as exc:
            self.stats.errors += 1
            log.error("could not embed %d chunks: %s", len(batch.items), describe(exc))
            await self._release(batch.items)
            return
        async with self._writing:
            await self._write(batch)

    async def _embed(self, batch: _Batch) -> None:
        model_id = self._active.encoder.model.model_id
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
                *(self._active.encoder.encode([todo[digests[i]].text for i in g]) for g in groups)
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
            async with self.pool.acquire() as conn, conn.transaction():
                await act_for_all_tenants(conn, self._settings.roles)
                found = await repo_queue.known_vectors(conn, model_id, sorted(ask))
            for (_, digest), vector in found.items():
                known[digest] = vector
        return known

    # --- write -----------------------------------------------------------------------

    async def _write(self, batch: _Batch) -> None:
        for attempt in range(1, 4):
            try:
                await self._store(batch)
                return
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
        memories = [
            repo.MemoryKey(i.tenant_id, i.source_id) for i, _ in pairs if i.source_type == "memory"
        ]
        async with self.pool.acquire() as conn, conn.transaction():
            await act_for_all_tenants(conn, self._settings.roles)
            await repo_queue.write_vectors(
                conn,
                batch.model_id,
                [i.chunk_id for i, _ in pairs],
                [v for _, v in pairs],
                self.token,
            )
            if memories:
                await self._announcer.memories(conn, memories, batch.model_id)
        self.stats.batches += 1
        self.stats.chunks += len(pairs)
        self.stats.last_batch = len(pairs)

    async def _release(self, items: list[repo_queue.Claimed]) -> None:
        with contextlib.suppress(Exception):
            async with self.pool.acquire() as conn:
                await repo_queue.release(conn, self.token, [i.chunk_id for i in items])
