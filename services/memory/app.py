"""The memory worker: typed agent memories from MEMORY, session summaries from CHAT,
vectors from engram.embedding.ready; consolidation jobs in the background;
``query.memory.search``. Run with ``engram run memory`` (or
``faststream run services.memory.app:app``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg
from faststream import ContextRepo, FastStream
from faststream.nats import NatsBroker

from contracts.envelope import Envelope
from contracts.memory_jobs import MemoryConsolidated, MemoryForgotten
from contracts.memory_search import (
    MEMORY_SEARCH_SUBJECT,
    MemorySearchReply,
    MemorySearchRequest,
)
from services.memory.handlers import Handlers
from services.memory.jobs import JobRunner
from services.memory.search import AccessLog, EmbedderUnavailable, create_search_pool, search
from services.memory.settings import MemorySettings
from services.runtime.replies import serve_query
from services.runtime.service import Worker, build_worker_app

Settings = MemorySettings
log = logging.getLogger("engram.memory")
CONCURRENCY = 16


@dataclass
class Parts:
    """What tests and tools read of a running memory worker."""

    runner: JobRunner | None = None
    access: AccessLog | None = None
    search_pool: asyncpg.Pool | None = None


def create_memory(settings: MemorySettings | None = None) -> tuple[FastStream, Worker, Parts]:
    settings = settings or MemorySettings()
    holder: dict[str, NatsBroker] = {}
    parts = Parts()

    async def publish(event: Envelope) -> None:
        js = holder["broker"].connection.jetstream()
        await js.publish(event.type, event.model_dump_json().encode(), headers=event.headers())

    handlers = Handlers(settings, publish)
    app, worker = build_worker_app(
        settings, handlers.consumes(),
        description="Typed agent memories (episodic, semantic, procedural, working) with "
        "importance, decay, access counts and expiry; session summaries; consolidation "
        "jobs (expire, merge, abstract, summarize, decay); answers query.memory.search.",
    )
    broker = app.broker
    assert isinstance(broker, NatsBroker)
    holder["broker"] = broker
    for notice in (MemoryConsolidated, MemoryForgotten):
        subject = notice.model_fields["type"].default
        broker.publisher(subject, title=subject, schema=notice,
                         description=(notice.__doc__ or "").strip())

    async def on_search(request: MemorySearchRequest, limit: int) -> MemorySearchReply:
        if parts.search_pool is None or parts.access is None:
            raise EmbedderUnavailable("the memory service is starting")
        return await search(parts.search_pool, broker.connection, settings, parts.access,
                            request, reply_bytes=limit)

    serve_query(broker, MEMORY_SEARCH_SUBJECT, MemorySearchRequest, on_search,
                queue=settings.query_queue, max_workers=CONCURRENCY,
                unavailable=(EmbedderUnavailable,), hint="ask with a smaller top_k",
                description="The memories of one agent that matter now "
                "(MemorySearchRequest -> MemorySearchReply | QueryError).")

    @app.after_startup
    async def start_background(context: ContextRepo) -> None:
        pool = context.get("pool")
        parts.search_pool = await create_search_pool(settings)
        parts.access = AccessLog(pool, settings.access_flush_s)
        parts.access.start()
        parts.runner = JobRunner(pool, settings, publish)
        await parts.runner.start(settings.database_url)

    @app.on_shutdown
    async def stop_background() -> None:
        # Registered after the runtime's hook: the consumers have drained already.
        if parts.runner is not None:
            await parts.runner.stop()
        if parts.access is not None:
            await parts.access.stop()
        if parts.search_pool is not None:
            await parts.search_pool.close()

    return app, worker, parts


def create_app(settings: MemorySettings | None = None) -> tuple[FastStream, Worker]:
    app, worker, _ = create_memory(settings)
    return app, worker


def __getattr__(name: str) -> object:
    # `faststream run services.memory.app:app` works, without building an app (and
    # reading the environment) on every import of this module.
    if name == "app":
        return create_app()[0]
    raise AttributeError(name)
