"""One event against one state's working copy: a new version (patch, merge patch,
restore, session reset), a snapshot, or a recorded conflict."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from contracts.chat import SessionEnded
from contracts.state import StateCheckpoint, StatePatch, StateRestore
from services.checkpointer import repo_read
from services.checkpointer.history import NotReadable, StatePoint, rebuild
from services.checkpointer.logic import Op, PatchRejected, apply_patch, clone, diff, merge_to_ops
from services.checkpointer.rows import Batch, Working, automatic_snapshot, conflict_rows
from services.checkpointer.settings import CheckpointerSettings
from services.checkpointer.versions import canonical, check_shape, compress, dumps, read_snapshot
from services.runtime.db import Connection


@dataclass
class Source:
    """Who and why, for the transition row."""

    kind: str
    trigger: str | None  # None: the event type, implied by the kind
    actor: str | None
    event_id: UUID
    occurred_at: datetime
    restored_version: int | None = None
    restored_checkpoint: UUID | None = None


@dataclass
class Changes:
    settings: CheckpointerSettings

    async def apply(
        self, conn: Connection, w: Working, event: Any, batch: Batch, now: datetime
    ) -> None:
        if isinstance(event, StateCheckpoint):
            if w.head.version == 0:  # a state exists from its first applied version
                raise PatchRejected("no such state: nothing to checkpoint before its first "
                                    "patch")
            self.checkpoint(w, event, batch)
            return
        if isinstance(event, SessionEnded):
            if w.doc["session"]:
                source = Source("reset", None, event.producer, event.event_id,
                                event.occurred_at)
                self.new_version(w, [{"op": "replace", "path": "/session", "value": {}}],
                                 source, batch, now)
            return
        p = event.payload
        if p.expected_version is not None and p.expected_version != w.head.version:
            conflict, outbox = conflict_rows(w.head, event, p.expected_version)
            batch.conflicts.append(conflict)
            batch.outbox.append(outbox)
            return
        if isinstance(event, StatePatch):
            if p.patch is not None:
                ops, kind = [op.model_dump(by_alias=True) for op in p.patch], "update"
            else:
                ops, kind = merge_to_ops(w.doc, p.merge_patch), "merge"
            source = Source(kind, p.trigger, p.actor or event.producer,
                            event.event_id, event.occurred_at)
            self.new_version(w, ops, source, batch, now)
        elif isinstance(event, StateRestore):
            if w.head.version == 0:
                raise PatchRejected("no such state: nothing to restore before its first patch")
            await self.restore(conn, w, event, batch, now)

    async def restore(
        self, conn: Connection, w: Working, event: StateRestore, batch: Batch, now: datetime
    ) -> None:
        p = event.payload
        await batch.flush(conn)  # earlier versions of this batch must be readable
        if p.checkpoint_id is not None:
            row = await repo_read.checkpoint_by_id(conn, w.head.state_id, p.checkpoint_id)
            if row is None:
                raise PatchRejected(f"checkpoint {p.checkpoint_id} does not exist for this state")
            target, version = read_snapshot(bytes(row["snapshot"]), row["compression"]), None
        else:
            version = p.version
            assert version is not None
            point = StatePoint(w.head.state_id, w.head.version, w.head.floor_version)

            async def current() -> dict[str, Any]:
                doc: dict[str, Any] = clone(w.doc)
                return doc

            try:
                target = await rebuild(conn, point, version, current)
            except NotReadable as err:
                raise PatchRejected(f"cannot restore: {err}") from None
        source = Source("restore", p.reason, p.actor or event.producer,
                        event.event_id, event.occurred_at, version, p.checkpoint_id)
        self.new_version(w, diff(w.doc, target), source, batch, now)

    def checkpoint(self, w: Working, event: StateCheckpoint, batch: Batch) -> None:
        p = event.payload
        snap = compress(w.canonical(), threshold=self.settings.compress_above,
                        level=self.settings.compress_level, archive=p.retention == "archive")
        batch.checkpoints.append((
            p.checkpoint_id, w.head.state_id, w.head.key[0], w.head.version,
            p.checkpoint_type.value, p.label, p.retention.value, p.expires_at, snap.compression,
            snap.size_bytes, snap.data, w.head.state_hash, dumps(p.metadata), event.event_id,
        ))

    def new_version(
        self, w: Working, ops: list[Op], source: Source, batch: Batch, now: datetime
    ) -> None:
        doc, inverse = apply_patch(w.doc, ops)
        try:
            check_shape(doc)
            text = canonical(doc)
            if len(text) > self.settings.max_state_bytes:
                raise PatchRejected(f"the state would be {len(text)} bytes "
                                    f"(limit {self.settings.max_state_bytes})")
            forward, backward = dumps(ops), dumps(inverse)
        except PatchRejected:
            w.doc, _ = apply_patch(doc, inverse)  # the working copy stays at its version
            raise
        w.advance(doc, text, ops)
        head = w.head
        batch.transitions.append((
            head.state_id, head.version, head.key[0], source.kind, forward, backward,
            head.state_hash, source.trigger, source.actor, source.event_id,
            source.restored_version, source.restored_checkpoint, source.occurred_at, now,
        ))
        if head.version % self.settings.snapshot_every == 0:
            batch.checkpoints.append(automatic_snapshot(
                w, self.settings.compress_above, self.settings.compress_level))
