"""Idempotency: an event's effects and its inbox row commit in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID

from services.runtime.db import Connection, quote_ident


class Inbox:
    def __init__(self, schema: str) -> None:
        table = f"{quote_ident(schema)}.inbox"
        self._claim = (
            f"INSERT INTO {table} (event_id, subject) "
            "SELECT * FROM unnest($1::uuid[], $2::text[]) "
            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
        )
        self._release = f"DELETE FROM {table} WHERE event_id = ANY($1::uuid[])"
        self._prune = f"DELETE FROM {table} WHERE received_at < now() - $1::interval"

    async def claim(
        self, conn: Connection, ids: Sequence[UUID], subjects: Sequence[str]
    ) -> set[UUID]:
        """Record the events; returns the ids seen for the first time (the rest are duplicates)."""
        rows = await conn.fetch(self._claim, list(ids), list(subjects))
        return {row[0] for row in rows}

    async def release(self, conn: Connection, ids: Sequence[UUID]) -> None:
        """Forget events that were claimed but not applied (they will be delivered again)."""
        await conn.execute(self._release, list(ids))

    async def prune(self, conn: Connection, older_than: timedelta) -> int:
        status = await conn.execute(self._prune, older_than)
        return int(status.split()[-1])
