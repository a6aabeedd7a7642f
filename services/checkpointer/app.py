"""The checkpointer worker: versioned agent state from STATE (and session ends from CHAT),
with the query.state.* subjects. Run with ``engram run checkpointer`` (or
``faststream run services.checkpointer.app:app``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
from faststream import ContextRepo, FastStream
from faststream.nats import NatsBroker
from nats.js import JetStreamContext

from services.checkpointer.api import register_queries
from services.checkpointer.handlers import consumes
from services.checkpointer.ordering import OrderingGate
from services.checkpointer.outbox import OutboxDrain
from services.checkpointer.prune import prune_periodically
from services.checkpointer.queries import create_query_pool
from services.checkpointer.settings import CheckpointerSettings
from services.checkpointer.writer import StateWriter
from services.runtime.bus import STATE
from services.runtime.errors import describe
from services.runtime.service import Worker, build_worker_app

Settings = CheckpointerSettings
log = logging.getLogger("engram.checkpointer")


def create_app(settings: CheckpointerSettings | None = None) -> tuple[FastStream, Worker]:
    settings = settings or CheckpointerSettings()
    holder: dict[str, NatsBroker] = {}

    def jetstream() -> JetStreamContext:
        js: JetStreamContext = holder["broker"].connection.jetstream()
        return js

    gate = OrderingGate(jetstream, STATE.name, settings.service) if settings.ordering_gate else None
    writer = StateWriter(settings, gate)
    app, worker = build_worker_app(
        settings,
        consumes(writer),
        description="Versioned agent state: every change a JSON Patch with its inverse, "
        "snapshots, restore, time travel, retention; answers query.state.*.",
    )
    broker = app.broker
    assert isinstance(broker, NatsBroker)
    holder["broker"] = broker
    register_queries(broker, settings.query_queue)
    tasks: list[asyncio.Task[None]] = []
    drains: list[OutboxDrain] = []
    pools: list[asyncpg.Pool] = []

    @app.on_startup
    async def open_query_pool(context: ContextRepo) -> None:
        # Before the broker starts its subscribers: a query that arrives first must find it.
        query_pool = await create_query_pool(settings.database_url, settings.role(),
                                             settings.query_pool_max)
        pools.append(query_pool)
        context.set_global("query_pool", query_pool)

    @app.after_startup
    async def start_background(context: ContextRepo) -> None:
        pool = context.get("pool")
        drain = OutboxDrain(pool, jetstream, dsn=settings.database_url,
                            poll_s=settings.outbox_poll_s)
        await drain.start()
        drains.append(drain)
        context.set_global("outbox", drain)
        context.set_global("writer", writer)
        if gate is not None:
            tasks.append(asyncio.create_task(sweep_parked(pool, writer, settings.sweep_every_s)))
        if settings.prune_keep_days:
            tasks.append(asyncio.create_task(prune_periodically(
                pool, settings.prune_keep_days, settings.prune_every_s, settings.compress_above
            )))

    @app.on_shutdown
    async def stop_background() -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for drain in drains:
            await drain.stop()
        for pool in pools:
            await pool.close()
        tasks.clear()
        drains.clear()
        pools.clear()

    return app, worker


async def sweep_parked(pool: asyncpg.Pool, writer: StateWriter, every_s: float) -> None:
    """Apply parked messages whose predecessors were dead-lettered (see ordering.py)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            async with pool.acquire() as conn, conn.transaction():
                await writer.sweep(conn)
        except Exception as exc:
            log.warning("sweep of parked messages failed: %s", describe(exc))


def __getattr__(name: str) -> object:
    # `faststream run services.checkpointer.app:app` works, without building an app (and
    # reading the environment) on every import of this module.
    if name == "app":
        return create_app()[0]
    raise AttributeError(name)
