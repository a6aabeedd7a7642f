"""The transactional outbox: nothing is published before the change it announces commits.

A handler that announces an effect adds ``Outgoing`` messages with ``Outbox.add`` on the
connection of its batch transaction; the rows (in ``<schema>.event_outbox``) and a
``NOTIFY`` commit with the effect or not at all. ``OutboxDrain``, a component every
publishing worker runs, wakes on the notification (or polls), takes rows with
``FOR UPDATE SKIP LOCKED`` (replicas share the work), publishes each with its
``Nats-Msg-Id`` and waits for the stream's ack, then deletes them. A crash between the
publish and the delete publishes again with the same id, which JetStream's duplicate
window drops: the event arrives once.

A row that can never be sent (larger than the server's ``max_payload``, or on a subject no
stream stores) is marked
``failed`` with the reason and kept, and logged at error: not lost without a record.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from uuid import UUID

import orjson

from contracts.envelope import Envelope
from services.runtime.bus import NoStream, stream_of
from services.runtime.component import Health, NotStarted, WorkerContext
from services.runtime.db import Connection, quote_ident
from services.runtime.loop import Loop
from services.runtime.sizes import MessageTooLarge, publish_checked
from services.runtime.telemetry import Measure
from services.runtime.tracing import Tracing, applying, cause_headers, publish_span

log = logging.getLogger("engram.outbox")
BATCH = 200


@dataclass(frozen=True)
class Outgoing:
    """One message to publish after commit."""

    subject: str
    msg_id: str  # deterministic: the same effect always gets the same id
    data: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    # A background job's announcement: (tenant, event id) of the event that caused it, whose
    # span's traceparent the inbox kept (``Outbox.add`` looks it up); None otherwise.
    cause: tuple[str, UUID] | None = None

    @classmethod
    def event(cls, event: Envelope) -> Outgoing:
        """An envelope, published on its type with ``Nats-Msg-Id`` = ``<tenant>:<event id>``
        (``Envelope.msg_id``): the ids services derive from their causes repeat across
        tenants when the causes' ids do. While the worker traces the event that caused it,
        its ``traceparent`` names that event's span (``tracing.cause_headers``); announced by
        a background job, its cause is looked up in the inbox when it is queued."""
        headers = event.headers() | cause_headers(event.tenant_id, event.causation_id)
        cause_id = event.causation_id
        cause = (event.tenant_id, cause_id) if cause_id is not None and not applying() else None
        return cls(event.type, event.msg_id, event.model_dump_json().encode(), headers, cause)


def with_trace(message: Outgoing, traces: Mapping[tuple[str, UUID], str]) -> dict[str, str]:
    headers = dict(message.headers)
    found = traces.get(message.cause) if message.cause is not None else None
    if found is not None and "traceparent" not in headers:
        headers["traceparent"] = found
    return headers


class Outbox:
    """Writes a service's outgoing messages into its schema's ``event_outbox``."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.table = f"{quote_ident(schema)}.event_outbox"
        self.channel = f"{schema}_outbox"
        self._traces = (
            f"SELECT i.tenant_id, i.event_id, i.traceparent FROM {quote_ident(schema)}.inbox i "
            "JOIN unnest($1::text[], $2::uuid[]) AS c(tenant_id, event_id) "
            "USING (tenant_id, event_id) WHERE i.traceparent IS NOT NULL"
        )

    async def add(self, conn: Connection, messages: Iterable[Outgoing]) -> int:
        """Queue ``messages`` in the caller's transaction; the NOTIFY is sent at commit."""
        messages = list(messages)
        traces = await self._traces_of(conn, messages)
        rows = [
            (m.subject, m.msg_id, orjson.dumps(with_trace(m, traces)).decode(), m.data)
            for m in messages
        ]
        if rows:
            await conn.executemany(
                f"INSERT INTO {self.table} (subject, msg_id, headers, data) "
                "VALUES ($1, $2, $3::text::jsonb, $4)",
                rows,
            )
            await conn.execute(f"NOTIFY {quote_ident(self.channel)}")
        return len(rows)

    async def _traces_of(
        self, conn: Connection, messages: list[Outgoing]
    ) -> dict[tuple[str, UUID], str]:
        """The traceparent the inbox kept for the causes of a job's announcements (one
        query; none when no message has a cause to look up)."""
        causes = {m.cause for m in messages if m.cause and "traceparent" not in m.headers}
        if not causes:
            return {}
        tenants, ids = zip(*causes, strict=True)
        rows = await conn.fetch(self._traces, list(tenants), list(ids))
        return {(row[0], row[1]): row[2] for row in rows}

    async def pending(self, conn: Connection) -> int:
        count: int = await conn.fetchval(f"SELECT count(*) FROM {self.table} WHERE failed IS NULL")
        return count


class OutboxDrain:
    """Publishes what committed transactions left in the outbox (see the module doc)."""

    name = "outbox"

    def __init__(self, outbox: Outbox, *, poll_s: float, tracing: Tracing | None = None) -> None:
        self.outbox = outbox
        self._tracing = tracing or Tracing.off()
        self.published = 0
        self.failed = 0
        self._ctx: WorkerContext | None = None
        self._loop = Loop(
            "outbox", self.drain_batch, every_s=poll_s, channel=outbox.channel, final_step=True
        )

    async def start(self, ctx: WorkerContext) -> None:
        self._ctx = ctx
        await self._loop.start(ctx)

    async def stop(self) -> None:
        await self._loop.stop()

    def health(self) -> Health:
        return self._loop.health()

    async def measures(self) -> list[Measure]:
        """Its depth (read from the table: replicas share one outbox) and what it sent."""
        if self._ctx is None:
            raise NotStarted("the outbox drain")
        async with self._ctx.pool.acquire() as conn:
            depth = await self.outbox.pending(conn)
        return [
            Measure(
                "outbox_depth",
                "Committed events in the service's outbox not published yet.",
                "gauge",
                depth,
            ),
            Measure(
                "outbox_published",
                "Outbox events this worker published.",
                "counter",
                self.published,
            ),
            Measure(
                "outbox_failed",
                "Outbox events this worker found unpublishable (kept, marked failed).",
                "counter",
                self.failed,
            ),
        ]

    async def drain(self) -> int:
        """Publish everything committed so far; how many were published."""
        before = self.published
        while await self.drain_batch():
            pass
        return self.published - before

    async def drain_batch(self) -> bool:
        """One batch; True when there may be more."""
        if self._ctx is None:
            raise NotStarted("the outbox drain")
        ctx, table = self._ctx, self.outbox.table
        async with ctx.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT id, subject, msg_id, headers::text AS headers, data FROM {table} "
                "WHERE failed IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                BATCH,
            )
            sent: list[int] = []
            for row in rows:
                headers = {**orjson.loads(row["headers"]), "Nats-Msg-Id": row["msg_id"]}
                try:
                    with publish_span(self._tracing, row["subject"], headers):
                        await publish_checked(
                            ctx.js,
                            row["subject"],
                            bytes(row["data"]),
                            headers=headers,
                            stream=stream_of(row["subject"]).name,
                        )
                except (MessageTooLarge, NoStream) as exc:
                    log.error(
                        "outbox row %d (%s) can never be published: %s",
                        row["id"],
                        row["subject"],
                        exc,
                    )
                    await conn.execute(
                        f"UPDATE {table} SET failed = $2 WHERE id = $1", row["id"], str(exc)
                    )
                    self.failed += 1
                    continue
                sent.append(row["id"])
            if sent:
                await conn.execute(f"DELETE FROM {table} WHERE id = ANY($1::bigint[])", sent)
        self.published += len(sent)
        return len(rows) == BATCH
