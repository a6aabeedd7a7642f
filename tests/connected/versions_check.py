"""What the stored versions of a message must be, whatever order its events arrived in
(docs/ingest.md): version 1 is the created event, then the edits by (occurred_at,
event_id), and the message row shows the highest version. Shared by the connected and
the property tests of message versions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from contracts.chat import MessageCreated, MessageDeleted, MessageEdited


@dataclass
class History:
    """Every distinct event of one message."""

    created: MessageCreated
    edits: dict[UUID, MessageEdited] = field(default_factory=dict)
    deletes: dict[UUID, MessageDeleted] = field(default_factory=dict)

    def expected_versions(self) -> list[tuple[UUID, str, str, datetime]]:
        """(event_id, content, content_type, at) of each version, in version order."""
        created = self.created
        kind = created.payload.content_type.value
        rows = [(created.event_id, created.payload.content, kind, created.occurred_at)]
        for e in sorted(self.edits.values(), key=lambda e: (e.occurred_at, e.event_id)):
            kind = e.payload.content_type.value if e.payload.content_type else kind
            rows.append((e.event_id, e.payload.content, kind, e.occurred_at))
        return rows

    def expected_delete(self) -> tuple[datetime, str, str | None] | None:
        if not self.deletes:
            return None
        first = min(
            self.deletes.values(),
            key=lambda e: (e.occurred_at, e.payload.deleted_by, e.payload.reason or ""),
        )
        return (first.occurred_at, first.payload.deleted_by, first.payload.reason)


def histories(events: Iterable[Any]) -> dict[UUID, History]:
    """The histories of the messages created among the events (duplicates once)."""
    found: dict[UUID, History] = {}
    for e in events:
        if isinstance(e, MessageCreated):
            found.setdefault(e.payload.message_id, History(e))
    for e in events:
        if isinstance(e, MessageEdited) and e.payload.message_id in found:
            found[e.payload.message_id].edits[e.event_id] = e
        elif isinstance(e, MessageDeleted) and e.payload.message_id in found:
            found[e.payload.message_id].deletes[e.event_id] = e
    return found


async def version_problems(db: asyncpg.Connection, expected: dict[UUID, History]) -> list[str]:
    """Every way the stored messages differ from the rule; empty when they all follow it."""
    ids = list(expected)
    messages = {
        r["message_id"]: r
        for r in await db.fetch("SELECT * FROM ingest.messages WHERE message_id = ANY($1)", ids)
    }
    stored: dict[UUID, list[asyncpg.Record]] = {mid: [] for mid in ids}
    for r in await db.fetch(
        "SELECT * FROM ingest.message_versions WHERE message_id = ANY($1)"
        " ORDER BY message_id, version",
        ids,
    ):
        stored[r["message_id"]].append(r)
    problems: list[str] = []
    for mid, history in expected.items():
        row = messages.get(mid)
        if row is None:
            problems.append(f"{mid}: not stored")
            continue
        problems += _message_problems(mid, history, row, stored[mid])
    return problems


def _message_problems(
    mid: UUID, history: History, row: asyncpg.Record, versions: Sequence[asyncpg.Record]
) -> list[str]:
    problems = []
    want = history.expected_versions()
    got = [(v["event_id"], v["content"], v["content_type"], v["created_at"]) for v in versions]
    if [v["version"] for v in versions] != list(range(1, len(versions) + 1)):
        problems.append(f"{mid}: versions are not 1..n: {[v['version'] for v in versions]}")
    if got != want:
        problems.append(f"{mid}: versions {got} != expected {want}")
    if versions:  # the invariant itself: the message shows its highest version
        top = versions[-1]
        shown = (row["content"], row["content_type"], row["version"], row["edited_at"])
        highest = (
            top["content"],
            top["content_type"],
            top["version"],
            top["created_at"] if top["version"] > 1 else None,
        )
        if shown != highest:
            problems.append(f"{mid}: message shows {shown}, highest version is {highest}")
    deleted = (row["deleted_at"], row["deleted_by"], row["delete_reason"])
    if deleted != (history.expected_delete() or (None, None, None)):
        problems.append(f"{mid}: delete {deleted} != expected {history.expected_delete()}")
    return problems
