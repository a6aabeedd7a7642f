"""Publishing after commit: the transactional outbox.

A batch that records a conflict also inserts the `engram.state.conflict` event into
``checkpoint.outbox`` and sends ``NOTIFY checkpoint_outbox``, all in its transaction;
PostgreSQL delivers the notification only if it commits. This task listens on its own
connection, and on each notification (or every ``outbox_poll_s``, in case one was missed)
takes rows with ``FOR UPDATE SKIP LOCKED`` (replicas share the work), publishes each to
JetStream with ``Nats-Msg-Id`` = the event id (a re-publish after a crash is dropped as a
duplicate), waits for the stream's ack and deletes the rows. Dead letters of parked
messages (see ordering.py) travel the same way to the DLQ stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
import orjson
from nats.js import JetStreamContext

from services.checkpointer import repo
from services.runtime.bus import DLQ, ENGRAM
from services.runtime.errors import describe

log = logging.getLogger("engram.checkpointer.outbox")
BATCH = 200


class OutboxDrain:
    def __init__(
        self,
        pool: asyncpg.Pool,
        jetstream: Callable[[], JetStreamContext],
        *,
        dsn: str,
        poll_s: float,
    ) -> None:
        self._pool = pool
        self._js = jetstream
        self._dsn = dsn
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncpg.Connection | None = None
        self.published = 0

    async def start(self) -> None:
        await self._listen()
        self._task = asyncio.create_task(self._run(), name="checkpointer:outbox")

    async def _listen(self) -> None:
        try:
            self._listener = await asyncpg.connect(self._dsn)
            await self._listener.add_listener(repo.OUTBOX_CHANNEL, self._notified)
        except Exception as exc:  # polling still delivers, only later
            log.warning("outbox LISTEN unavailable, polling only: %s", describe(exc))
            self._listener = None

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.drain()
            except Exception as exc:
                log.warning("outbox drain failed, will retry: %s", describe(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)
            self._wake.clear()
            if self._listener is None or self._listener.is_closed():
                await self._listen()

    async def drain(self) -> int:
        """Publish everything committed so far; returns how many were published."""
        total = 0
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await repo.take_outbox(conn, BATCH)
                if not rows:
                    return total
                js = self._js()
                for row in rows:
                    headers = {**orjson.loads(row["headers"]), "Nats-Msg-Id": row["msg_id"]}
                    stream = DLQ.name if row["subject"].startswith("dlq.") else ENGRAM.name
                    await js.publish(row["subject"], bytes(row["data"]), headers=headers,
                                     stream=stream)
                await repo.delete_outbox(conn, [row["id"] for row in rows])
            total += len(rows)
            self.published += len(rows)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.drain()  # what the last batches committed
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
