"""The model a worker serves: loaded at start (the active one, or the configured one
registered as active when none is), run by its encoder thread, used for chunking, and
followed when `engram reembed` makes another model active (a Loop every
``model_check_s``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg

from services.embedder import bulk, repo_models, repo_queue
from services.embedder.encoder import Encoder
from services.embedder.loading import load_active, load_model
from services.embedder.logic import Chunk, chunk_text
from services.embedder.model import LoadedModel, NotReady
from services.embedder.settings import EmbedderSettings
from services.runtime.component import Health, NotStarted, WorkerContext
from services.runtime.db import act_for_all_tenants
from services.runtime.loop import Loop

log = logging.getLogger("engram.embedder")


class ActiveModel:
    """A component; handlers, the pump and the queries read the model through it."""

    name = "model"

    def __init__(self, settings: EmbedderSettings) -> None:
        self.settings = settings
        self.switches = 0  # models followed since start
        self._encoder: Encoder | None = None
        self._pool: asyncpg.Pool | None = None
        every = settings.model_check_s
        self._follow = Loop("model-follow", self.follow_once, every_s=every, first_after_s=every)

    # --- what handlers, the pump and the queries use ---------------------------------

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            raise NotReady("the embedder's model is not loaded yet")
        return self._encoder

    @property
    def model(self) -> LoadedModel:
        return self.encoder.model

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise NotStarted("the embedder's database pool")
        return self._pool

    @property
    def runtime_info(self) -> bulk.RuntimeInfo | None:
        """What encodes bulk work, the gate's cosines, and the fallback's reason if any."""
        return self.model.runtime_info

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

    def use_model(self, model: LoadedModel) -> None:
        """Serve ``model`` without a database (query handler tests, benchmarks)."""
        self._encoder = self._new_encoder(model)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self, ctx: WorkerContext) -> None:
        """Load the active model (or register the configured one if none is active);
        before the consumers start, since chunking needs the model's tokenizer."""
        self._pool = ctx.pool
        self._encoder = self._new_encoder(await self._load(ctx.pool))
        await self._follow.start(ctx)

    async def stop(self) -> None:
        await self._follow.stop()
        if self._encoder is not None:
            await asyncio.to_thread(self._encoder.close)
        self._pool = None

    def health(self) -> Health:
        if self._encoder is None:
            return Health(self.name, False, "no model loaded")
        follow = self._follow.health()
        return Health(self.name, follow.ok, f"{self.model.model_id}; {follow.detail}")

    async def _load(self, pool: asyncpg.Pool) -> LoadedModel:
        s = self.settings
        async with pool.acquire() as conn:
            active = await repo_models.active_model(conn)
        if active is not None:
            if s.model not in (active.source, active.model_id):
                log.warning(
                    "EMBEDDER_MODEL=%s, but %s is the active model (switched by `engram "
                    "reembed`); using %s",
                    s.model,
                    active.model_id,
                    active.model_id,
                )
            return await load_active(s, active)
        model = await load_model(s, s.model, s.model_id, None)
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
            model = await load_active(s, active)
        return model

    def _new_encoder(self, model: LoadedModel) -> Encoder:
        s = self.settings
        on_cpu = model.runtime_info is None or model.runtime_info.device == "cpu"
        return Encoder(model, query_threads=s.query_threads, onnx_queries=s.onnx_queries and on_cpu)

    async def follow_once(self) -> bool:
        """Switch to the active model when `engram reembed` made another one active;
        whether it switched."""
        async with self.pool.acquire() as conn:
            active = await repo_models.active_model(conn)
        if active is None or active.model_id == self.model.model_id:
            return False
        log.info("active model is now %s; loading it", active.model_id)
        model = await load_active(self.settings, active)
        if model.dimensions != active.dimensions:
            raise ValueError(
                f"{active.source} has {model.dimensions} dimensions, the "
                f"database says {active.dimensions}"
            )
        await self.encoder.swap(model)
        self.switches += 1
        async with self.pool.acquire() as conn, conn.transaction():
            await act_for_all_tenants(conn, self.settings.roles)
            queued = await repo_queue.backfill(conn, model.model_id)
        log.info(
            "switched to %s; %d chunks written meanwhile queued for it", model.model_id, queued
        )
        return True
