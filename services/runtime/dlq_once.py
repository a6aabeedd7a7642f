"""Dead letters that are sent once per message, however long after it comes back.

The DLQ stream drops a dead letter it has seen (``Nats-Msg-Id`` ``service:stream:seq``)
only within its duplicate window, two minutes. A message delivered again later (a
consumer re-created from its last known position replays the few seconds after it, or
an operator replays a range) would be dead-lettered a second time. ``OnceDeadLetters``
remembers each message it dead-lettered in the service's ``dead_letters_sent``
(sql/runtime/005) after the DLQ acknowledged it, and sends none whose record is there
with the same bytes.

The record is best-effort in one direction only: when the database cannot be asked, the
dead letter is sent anyway (the DLQ's window still drops a quick repeat), because an
invalid event must reach the DLQ even while PostgreSQL is down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import asyncpg
from nats.js import JetStreamContext

from services.runtime.db import quote_ident
from services.runtime.dlq import DeadKind, DeadLetters, body_digest
from services.runtime.errors import describe

log = logging.getLogger("engram.dlq")

# The database is asked on the way to the DLQ; it must not hold a dead letter for long.
LOOKUP_TIMEOUT_S = 5.0


class OnceDeadLetters(DeadLetters):
    def __init__(self, js: JetStreamContext, service: str, pool: asyncpg.Pool, schema: str) -> None:
        super().__init__(js, service)
        self._pool = pool
        s = quote_ident(schema)
        self._lookup = (
            f"SELECT digest FROM {s}.dead_letters_sent WHERE stream = $1 AND sequence = $2"
        )
        self._record = f"SELECT {s}.record_dead_letter($1, $2, $3)"
        self.skipped = 0  # dead letters not sent again: their record was there

    async def send_raw(
        self,
        subject: str,
        data: bytes,
        *,
        stream: str,
        sequence: int,
        deliveries: int,
        kind: DeadKind,
        reason: str,
        trace: Mapping[str, str] | None = None,
    ) -> None:
        digest = body_digest(data)
        if await self._sent_before(stream, sequence, digest):
            self.skipped += 1
            log.info("%s (%s %d) was dead-lettered before; not again", subject, stream, sequence)
            return
        await super().send_raw(
            subject,
            data,
            stream=stream,
            sequence=sequence,
            deliveries=deliveries,
            kind=kind,
            reason=reason,
            trace=trace,
        )
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S), self._pool.acquire() as conn:
                await conn.execute(self._record, stream, sequence, digest)
        except Exception as exc:  # sent: only a much later repeat could send it again
            log.warning(
                "could not record the dead letter of %s %d: %s", stream, sequence, describe(exc)
            )

    async def _sent_before(self, stream: str, sequence: int, digest: str) -> bool:
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S), self._pool.acquire() as conn:
                found = await conn.fetchval(self._lookup, stream, sequence)
        except Exception as exc:
            log.warning(
                "cannot tell whether %s %d was dead-lettered before (%s); sending it",
                stream,
                sequence,
                describe(exc),
            )
            return False
        return bool(found == digest)
