"""What one embedder process holds: the model (loaded once, then following the active
model), its encoder thread, chunking, the embedding pump, and the memory outbox publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Sequence

import asyncpg
from nats.js import JetStreamContext

from contracts.embedding import (
    EMBEDDING_READY_SUBJECT,
    EmbeddingReady,
    EmbeddingReadyPayload,
    SourceType,
)
from contracts.envelope import utcnow
from services.embedder import bulk, gate, repo, repo_models, repo_queue
from services.embedder.logic import Chunk, chunk_text, embedding_event_id, mean_unit
from services.embedder.model import Encoder, LoadedModel, NotReady, load, resolve
from services.embedder.pump import Pump
from services.embedder.quantize import INT8_SUFFIX, cpu_int8_support
from services.embedder.settings import EmbedderSettings
from services.runtime.bus import ENGRAM
from services.runtime.db import ALL_TENANTS, scope_tenant
from services.runtime.errors import describe

log = logging.getLogger("engram.embedder")
OUTBOX_BATCH = 256


class Engine:
    def __init__(self, settings: EmbedderSettings) -> None:
        self.settings = settings
        self.producer = f"embedder@{socket.gethostname()}"
        self.published = 0  # engram.embedding.ready events sent
        self.switches = 0
        self._encoder: Encoder | None = None
        self._pump: Pump | None = None
        self._pool: asyncpg.Pool | None = None
        self._js: JetStreamContext | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._publishing = asyncio.Lock()
        self._announcing: set[asyncio.Task[None]] = set()

    # --- what handlers use -----------------------------------------------------------

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            raise NotReady("the embedder's model is not loaded yet")
        return self._encoder

    @property
    def model(self) -> LoadedModel:
        return self.encoder.model

    @property
    def runtime_info(self) -> bulk.RuntimeInfo | None:
        """What encodes bulk work, the gate's cosines, and the fallback's reason if any."""
        return self.model.runtime_info

    @property
    def pump(self) -> Pump:
        assert self._pump is not None
        return self._pump

    @property
    def window(self) -> int:
        window = self.model.window
        return min(self.settings.chunk_tokens or window, window)

    def chunk(self, texts: Sequence[str]) -> list[list[Chunk]]:
        """Each text cut to the model's window with the model's own tokenizer."""
        window, overlap = self.window, self.settings.chunk_overlap_tokens
        offsets = self.model.token_offsets(texts)
        return [
            chunk_text(t, o, window=window, overlap=overlap)
            for t, o in zip(texts, offsets, strict=True)
        ]

    # --- lifecycle -------------------------------------------------------------------

    async def start(self, pool: asyncpg.Pool) -> None:
        """Load the active model (or register the configured one if none is active)."""
        self._pool = pool
        async with pool.acquire() as conn:
            active = await repo_models.active_model(conn)
        if active is None:
            model = await self._load(self.settings.model, self.settings.model_id, None)
            async with pool.acquire() as conn:
                state = await repo_models.register_model(
                    conn,
                    model.model_id,
                    model.source.source,
                    model.dimensions,
                    model.max_tokens,
                    activate_if_none=True,
                )
                active = await repo_models.active_model(conn)
            if state != "active" and active is not None:  # another replica won the race
                model = await self._load_active(active)
        else:
            if self.settings.model not in (active.source, active.model_id):
                log.warning(
                    "EMBEDDER_MODEL=%s, but %s is the active model (switched by `engram "
                    "reembed`); using %s",
                    self.settings.model,
                    active.model_id,
                    active.model_id,
                )
            model = await self._load_active(active)
        self._encoder = self._new_encoder(model)
        self._pump = Pump(pool, self._encoder, self.settings, self.publish_outbox)

    def use_model(self, model: LoadedModel) -> None:
        """Serve ``model`` without a database (in-memory broker tests, benchmarks)."""
        self._encoder = self._new_encoder(model)

    def _new_encoder(self, model: LoadedModel) -> Encoder:
        s = self.settings
        on_cpu = model.runtime_info is None or model.runtime_info.device == "cpu"
        return Encoder(
            model, query_threads=s.query_threads, onnx_queries=s.onnx_queries and on_cpu
        )

    async def start_background(self, js: JetStreamContext) -> None:
        """After the consumers: the pump, the NOTIFY listener, the model follower."""
        self._js = js
        await self.pump.start()
        self._tasks = [
            asyncio.create_task(self._listen(), name="embedder-listen"),
            asyncio.create_task(self._follow(), name="embedder-follow"),
        ]
        await self.publish_outbox()  # left over from a previous run

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._pump is not None:
            await self._pump.stop(self.settings.drain_timeout_s)
        with contextlib.suppress(Exception):
            await self.publish_outbox()
        if self._encoder is not None:
            await asyncio.to_thread(self._encoder.close)

    async def _load_active(self, active: repo_models.ModelRow) -> LoadedModel:
        """The active model, encoded the way its vectors were: an index of int8 vectors
        (`<id>#int8`) with int8 whatever the setting, an fp32 index with fp32."""
        if active.model_id.endswith(INT8_SUFFIX):
            base_id = active.model_id.removesuffix(INT8_SUFFIX)
            model = await self._load(active.source, base_id, "onnx-int8")
            if model.model_id != active.model_id:  # the gate failed here: keep the space
                log.error(
                    "the active index is int8 (%s) but int8 failed this worker's gate; "
                    "encoding with int8 anyway so its vectors match the index",
                    active.model_id,
                )
                model = await self._load(active.source, base_id, "onnx-int8", forced=True)
            return model
        runtime, _ = await asyncio.to_thread(self.choose_runtime)
        if runtime == "onnx-int8":
            log.info(
                "the active index is fp32 (%s): encoding with fp32; `engram reembed --model "
                "%s --runtime onnx-int8` moves it to int8 (%s%s, about 2x faster here)",
                active.model_id, active.source, active.model_id, INT8_SUFFIX,
            )
            runtime = "torch"
        return await self._load(active.source, active.model_id, runtime)

    def choose_runtime(self) -> tuple[str, str]:
        """(runtime, device) that EMBEDDER_RUNTIME and EMBEDDER_DEVICE ask for here."""
        s = self.settings
        cuda = False
        if s.device == "auto" or s.runtime == "auto":
            import torch

            cuda = bool(torch.cuda.is_available())
        return bulk.choose(s.runtime, s.device, cuda=cuda, int8_cpu=cpu_int8_support())

    async def _load(
        self, source: str, model_id: str | None, runtime: str | None, *, forced: bool = False
    ) -> LoadedModel:
        s = self.settings

        def loading() -> LoadedModel:
            chosen, device = self.choose_runtime()
            limits = gate.Gate(s.int8_min_mean_cosine, s.int8_min_cosine, s.int8_min_recall)
            return load(
                resolve(source, model_id),
                device=device,
                batch_size=s.model_batch_size if device == "cpu" else s.gpu_batch_size,
                runtime=runtime or chosen,
                gate=gate.Gate(-1.0, -1.0, -1.0) if forced else limits,
                cache_dir=s.onnx_cache_dir or None,
                query_threads=s.query_threads,
            )

        return await asyncio.to_thread(loading)

    # --- background ------------------------------------------------------------------

    async def _listen(self) -> None:
        """Wake the pump when a transaction that queued chunks commits (NOTIFY)."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.settings.database_url)
                await conn.add_listener(repo.NOTIFY_CHANNEL, lambda *_: self.pump.wake())
                await conn.add_listener(repo.OUTBOX_CHANNEL, lambda *_: self._announce())
                self.pump.wake()  # anything queued while not listening
                while not conn.is_closed():
                    await asyncio.sleep(self.settings.poll_s)
                    await self.publish_outbox()  # left by a failed publish
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("NOTIFY listener lost: %s; polling meanwhile", describe(exc))
                await asyncio.sleep(self.settings.poll_s)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)

    async def _follow(self) -> None:
        """Switch to the active model when `engram reembed` made another one active."""
        while True:
            await asyncio.sleep(self.settings.model_check_s)
            try:
                await self.follow_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("could not follow the active model: %s", describe(exc))

    async def follow_once(self) -> bool:
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            active = await repo_models.active_model(conn)
        if active is None or active.model_id == self.model.model_id:
            return False
        log.info("active model is now %s; loading it", active.model_id)
        model = await self._load_active(active)
        if model.dimensions != active.dimensions:
            raise ValueError(
                f"{active.source} has {model.dimensions} dimensions, the "
                f"database says {active.dimensions}"
            )
        await self.encoder.swap(model)
        self.switches += 1
        async with self._pool.acquire() as conn, conn.transaction():
            await scope_tenant(conn, ALL_TENANTS)
            queued = await repo_queue.backfill(conn, model.model_id)
        log.info(
            "switched to %s; %d chunks written meanwhile queued for it", model.model_id, queued
        )
        return True

    def _announce(self) -> None:
        task = asyncio.create_task(self.publish_outbox())
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    async def publish_outbox(self) -> None:
        """Publish engram.embedding.ready for the memories whose vectors are committed."""
        if self._js is None or self._pool is None:
            return
        async with self._publishing:
            try:
                while await self._publish_some():
                    pass
            except Exception as exc:  # kept in the outbox: published on a later try
                log.warning("could not publish engram.embedding.ready: %s", describe(exc))

    async def _publish_some(self) -> bool:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            await scope_tenant(conn, ALL_TENANTS)
            rows = await repo_models.take_outbox(conn, OUTBOX_BATCH)
            for row in rows:
                if row.vector is not None:
                    await self._publish(row)
            if rows:
                await repo_models.delete_outbox(conn, rows)
        return len(rows) == OUTBOX_BATCH

    async def _publish(self, row: repo_models.ReadyMemory) -> None:
        assert self._js is not None and row.vector is not None
        vector = mean_unit([row.vector.tolist()])
        event = EmbeddingReady(
            event_id=embedding_event_id(row.memory_id, row.model_id, row.content_hash),
            occurred_at=utcnow(),
            tenant_id=row.tenant_id,
            producer=self.producer,
            causation_id=row.causation_id,
            payload=EmbeddingReadyPayload(
                source_type=SourceType.memory,
                source_id=row.memory_id,
                model_id=row.model_id,
                dimensions=len(vector),
                vector=vector,
                content_hash=row.content_hash,
                chunks=row.chunks,
            ),
        )
        await self._js.publish(
            EMBEDDING_READY_SUBJECT,
            event.model_dump_json().encode(),
            headers=event.headers(),
            stream=ENGRAM.name,
        )
        self.published += 1
