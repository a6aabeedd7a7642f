"""The embedding pump: queued chunks -> model batches -> vectors committed.

Three stages, so each overlaps the others:

  gather   a Loop that leases queued chunks, woken by a PostgreSQL NOTIFY at the commit
           that queued them (or every ``poll_s``); while the model is busy it keeps filling
           the next batch, while the model is idle it hands a batch over once full or
           ``model_max_wait_s`` after its first chunk, so one event alone is embedded at
           once and a backlog makes full batches. At most one batch waits for the model
           while another is encoded;
  encode   the encoder thread, known vectors first (``pump_batch.py``);
  write    one transaction stores the vectors and announces each memory now complete
           (``pump_batch.py``), while the model encodes the next batch.

A chunk leased by a worker that dies is embedded by another after ``lease_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

import asyncpg

from services.embedder import repo, repo_queue
from services.embedder.active_model import ActiveModel
from services.embedder.announce import Announcer
from services.embedder.pump_batch import Batch, BatchEmbedder, PumpStats
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


class Pump:
    """A component: the gather Loop and the batches it handed over."""

    name = "pump"

    def __init__(
        self, active: ActiveModel, settings: EmbedderSettings, announcer: Announcer
    ) -> None:
        self._settings = settings
        self.cache = VectorCache(settings.cache_size)
        self.stats = PumpStats()
        self.token = uuid.uuid4()  # this pump's leases
        self._embedder = BatchEmbedder(
            active, settings, announcer, cache=self.cache, stats=self.stats, token=self.token
        )
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
            await self._embedder.release(self.pool, items)
            raise
        self._encoding += 1
        task = asyncio.create_task(self._process(Batch(items)), name="embedder-batch")
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

    # --- handing a batch from encode to write ----------------------------------------

    async def _process(self, batch: Batch) -> None:
        try:
            try:
                await self._embedder.embed(self.pool, batch)
            finally:
                self._encoding -= 1
                self._encoded.set()
        except Exception as exc:
            self.stats.errors += 1
            log.error("could not embed %d chunks: %s", len(batch.items), describe(exc))
            await self._embedder.release(self.pool, batch.items)
            return
        async with self._writing:
            await self._embedder.write(self.pool, batch)
