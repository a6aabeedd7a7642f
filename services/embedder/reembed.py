"""Re-embedding every chunk with another model, while the active model keeps serving.

1. The new model is registered ('building') and its HNSW index is created (partial: only
   its rows). Searches keep using the active model's rows: vectors of two models are never
   compared, because a search selects the rows of the model that encoded its query.
2. Every chunk without a vector of the new model is embedded, in chunk order, the writes
   of one batch overlapping the encoding of the next. Stopping loses nothing: the next run
   starts with the chunks still missing (resume).
3. The switch is one transaction: chunk writes are paused (SHARE lock on chunks), the few
   chunks added since the pass are embedded, the new model becomes active and the old one
   retired, and every memory's engram.embedding.ready with the new vector goes to the
   outbox in that transaction (a running worker's outbox drain publishes it).
4. Workers notice within ``model_check_s``, load the new model, and queue what they wrote
   with the old one meanwhile. After ``grace_s`` the old model's vectors and index go.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

from services.embedder import gate as gate_
from services.embedder import repo, repo_models
from services.embedder.announce import Announcer
from services.embedder.model import LoadedModel, load, resolve
from services.embedder.spec import SPEC
from services.runtime.db import act_for_all_tenants

log = logging.getLogger("engram.embedder.reembed")
Page = list[tuple[int, str, str, str]]  # chunk id, tenant, hash, text
Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass
class Outcome:
    model_id: str
    previous: str | None
    embedded: int  # chunks embedded in this run
    encoded: int  # texts the model encoded (equal texts once)
    switched: bool
    deleted: int  # vectors of the previous model deleted


async def connect(database_url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(database_url)
    await register_vector(conn)
    # Moving the index spans every tenant: this one connection acts, for its whole
    # session, as the embedder's cross-tenant role (an admin login or the worker's).
    await act_for_all_tenants(conn, SPEC.store.roles, local=False)
    return conn


async def reembed(
    database_url: str,
    source: str,
    *,
    model_id: str | None = None,
    device: str = "cpu",
    batch_size: int = 64,
    grace_s: float = 60.0,
    keep_old: bool = False,
    progress: Progress = lambda *_: None,
    model: LoadedModel | None = None,
    page_size: int = 2048,
    runtime: str = "torch",
    gate: gate_.Gate = gate_.DEFAULT_GATE,
    cache_dir: str | None = None,
) -> Outcome:
    """``runtime`` (torch, onnx, onnx-int8) encodes the new vectors; onnx-int8 stores them
    under ``<model id>#int8`` (so the same model in int8 is a new index to move to), unless
    int8 fails its gate (then fp32, logged)."""
    if model is None:
        model = await asyncio.to_thread(
            load,
            resolve(source, model_id),
            device=device,
            batch_size=batch_size,
            runtime=runtime,
            gate=gate,
            cache_dir=cache_dir,
        )
    conn = await connect(database_url)
    try:
        active = await repo_models.active_model(conn)
        if active is not None and active.model_id == model.model_id:
            return Outcome(model.model_id, None, 0, 0, switched=False, deleted=0)
        if active is not None and model.max_tokens < active.max_tokens:
            log.warning(
                "%s reads %d tokens, fewer than %s (%d): longer chunks are cut",
                model.model_id,
                model.max_tokens,
                active.model_id,
                active.max_tokens,
            )
        await repo_models.register_model(
            conn,
            model.model_id,
            source,
            model.dimensions,
            model.max_tokens,
            activate_if_none=True,
        )
        job = _Job(conn, model, page_size, progress)  # big pages: little padding
        await job.run_pass()
        async with conn.transaction():
            await conn.execute("LOCK TABLE embedder.chunks IN SHARE MODE")
            await job.run_pass()  # what arrived since: a few chunks, writes are paused
            previous = await repo_models.switch_model(conn, model.model_id)
            announcer = Announcer(SPEC.outbox)
            await announcer.memories(conn, await repo.indexed_memories(conn), model.model_id)
        deleted = 0
        if previous and previous != model.model_id and not keep_old:
            deleted = await _drop_old(conn, previous, grace_s, progress)
        return Outcome(model.model_id, previous, job.embedded, job.encoded, True, deleted)
    finally:
        await conn.close()


class _Job:
    def __init__(
        self, conn: asyncpg.Connection, model: LoadedModel, page: int, progress: Progress
    ) -> None:
        self.conn, self.model, self.page, self.progress = conn, model, page, progress
        self.embedded = 0
        self.encoded = 0

    async def run_pass(self) -> None:
        """Embed every chunk that has no vector of the model. One connection does the
        reads and writes in turn while the encoder thread works on the next page."""
        model_id = self.model.model_id
        total, done = await repo_models.reembed_progress(self.conn, model_id)
        self.progress("embedding", done, total)
        page = await repo_models.missing_page(self.conn, model_id, 0, self.page)
        previous: tuple[Page, list[np.ndarray]] | None = None
        while page:
            encoding = asyncio.ensure_future(self._vectors(page))
            if previous is not None:
                await self._write(*previous)
            following = await repo_models.missing_page(self.conn, model_id, page[-1][0], self.page)
            previous = (page, await encoding)
            done += len(page)
            self.progress("embedding", done, max(total, done))
            page = following
        if previous is not None:
            await self._write(*previous)

    async def _vectors(self, page: Page) -> list[np.ndarray]:
        unique: dict[str, str] = {}
        for _, _, digest, text in page:
            unique.setdefault(digest, text)
        encoded = await asyncio.to_thread(self.model.encode, list(unique.values()))
        self.encoded += len(unique)
        by_hash = dict(zip(unique, encoded, strict=True))
        return [by_hash[digest] for _, _, digest, _ in page]

    async def _write(self, page: Page, vectors: Sequence[np.ndarray]) -> None:
        # Its own transaction, unless inside the switch's (then it is part of it).
        await repo_models.insert_vectors(
            self.conn, self.model.model_id, [p[0] for p in page], vectors
        )
        self.embedded += len(page)


async def _drop_old(conn: asyncpg.Connection, old: str, grace_s: float, progress: Progress) -> int:
    """After the grace period (workers follow the switch), delete the old vectors."""
    steps = max(1, int(grace_s))
    for i in range(steps):
        progress("grace", i, steps)
        await asyncio.sleep(grace_s / steps)
    progress("grace", steps, steps)
    total = await conn.fetchval(
        "SELECT count(*) FROM embedder.chunk_vectors WHERE model_id = $1", old
    )
    deleted = 0
    while batch := await repo_models.delete_model_vectors(conn, old, 5000):
        deleted += batch
        progress("cleanup", deleted, int(total))
    await conn.execute("SELECT embedder.drop_model_index($1)", old)
    return deleted
