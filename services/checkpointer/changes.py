"""One event against one state's working copy: a new version (patch, merge patch,
restore, session reset), a snapshot, or a recorded conflict."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from contracts.chat import SessionEnded
from contracts.state import StateCheckpoint, StateEvent, StatePatch, StateRestore
from services.checkpointer import repo, repo_read
from services.checkpointer.history import NotReadable, StatePoint, rebuild
from services.checkpointer.patch import Document, Op, PatchRejected, apply_patch, clone
from services.checkpointer.patch_diff import diff, merge_to_ops
from services.checkpointer.rows import Batch, Working, automatic_snapshot, conflict_rows
from services.checkpointer.settings import CheckpointerSettings
from services.checkpointer.versions import canonical, check_shape, compress, dumps, read_snapshot
from services.runtime.db import Connection


@dataclass(frozen=True)
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
        self,
        conn: Connection,
        w: Working,
        event: StateEvent | SessionEnded,
        batch: Batch,
        now: datetime,
    ) -> None:
        if isinstance(event, StateCheckpoint):
            if w.head.version == 0:  # a state exists from its first applied version
                raise PatchRejected("no such state: nothing to checkpoint before its first patch")
            await self.unused(conn, w.head.key[0], event.payload.checkpoint_id, batch)
            self.checkpoint(w, event, batch)
            return
        if isinstance(event, SessionEnded):
            if w.doc["session"]:
                source = Source("reset", None, event.producer, event.event_id, event.occurred_at)
                self.new_version(
                    w, [{"op": "replace", "path": "/session", "value": {}}], source, batch, now
                )
            return
        p = event.payload
        if p.expected_version is not None and p.expected_version != w.head.version:
            conflict, announcement = conflict_rows(w.head, event, p.expected_version)
            batch.conflicts.append(conflict)
            batch.outgoing.append(announcement)
            return
        if isinstance(event, StatePatch):
            change = event.payload
            if change.patch is not None:
                ops, kind = [op.model_dump(by_alias=True) for op in change.patch], "update"
            else:
                assert change.merge_patch is not None  # the contract requires one of the two
                ops, kind = merge_to_ops(w.doc, change.merge_patch), "merge"
            source = Source(
                kind,
                change.trigger,
                change.actor or event.producer,
                event.event_id,
                event.occurred_at,
            )
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
            row = await repo_read.checkpoint_by_id(
                conn, w.head.key[0], w.head.state_id, p.checkpoint_id
            )
            if row is None:
                raise PatchRejected(f"checkpoint {p.checkpoint_id} does not exist for this state")
            target, version = read_snapshot(bytes(row["snapshot"]), row["compression"]), None
        else:
            version = p.version
            assert version is not None
            point = StatePoint(w.head.state_id, w.head.version, w.head.floor_version)

            async def current() -> Document:
                doc: Document = clone(w.doc)
                return doc

            try:
                target = await rebuild(conn, point, version, current)
            except NotReadable as err:
                raise PatchRejected(f"cannot restore: {err}") from None
        source = Source(
            "restore",
            p.reason,
            p.actor or event.producer,
            event.event_id,
            event.occurred_at,
            version,
            p.checkpoint_id,
        )
        self.new_version(w, diff(w.doc, target), source, batch, now)

    @staticmethod
    async def unused(conn: Connection, tenant: str, checkpoint_id: UUID, batch: Batch) -> None:
        """A checkpoint id names one checkpoint of its tenant (other tenants may use it
        too): taken again, the event is rejected with that reason, not a unique violation
        of the whole batch."""
        taken = any(
            (c.tenant_id, c.checkpoint_id) == (tenant, checkpoint_id) for c in batch.checkpoints
        )
        if taken or await repo_read.checkpoint_taken(conn, tenant, checkpoint_id):
            raise PatchRejected(
                f"checkpoint {checkpoint_id} exists already in tenant {tenant!r}: "
                "a checkpoint id names one checkpoint of its tenant"
            )

    def checkpoint(self, w: Working, event: StateCheckpoint, batch: Batch) -> None:
        p = event.payload
        snap = compress(
            w.canonical(),
            threshold=self.settings.compress_above,
            level=self.settings.compress_level,
            archive=p.retention == "archive",
        )
        batch.checkpoints.append(
            repo.CheckpointRow(
                checkpoint_id=p.checkpoint_id,
                state_id=w.head.state_id,
                tenant_id=w.head.key[0],
                version=w.head.version,
                checkpoint_type=p.checkpoint_type.value,
                label=p.label,
                retention=p.retention.value,
                expires_at=p.expires_at,
                compression=snap.compression,
                size_bytes=snap.size_bytes,
                snapshot=snap.data,
                state_hash=w.head.state_hash,
                metadata=dumps(p.metadata),
                event_id=event.event_id,
            )
        )

    def new_version(
        self, w: Working, ops: list[Op], source: Source, batch: Batch, now: datetime
    ) -> None:
        doc, inverse = apply_patch(w.doc, ops)
        try:
            check_shape(doc)
            text = canonical(doc)
            if len(text) > self.settings.max_state_bytes:
                raise PatchRejected(
                    f"the state would be {len(text)} bytes (limit {self.settings.max_state_bytes})"
                )
            forward, backward = dumps(ops), dumps(inverse)
        except PatchRejected:
            w.doc, _ = apply_patch(doc, inverse)  # the working copy stays at its version
            raise
        w.advance(doc, text, ops)
        head = w.head
        batch.transitions.append(
            repo.TransitionRow(
                state_id=head.state_id,
                version=head.version,
                tenant_id=head.key[0],
                kind=source.kind,
                patch=forward,
                inverse=backward,
                state_hash=head.state_hash,
                trigger=source.trigger,
                actor=source.actor,
                event_id=source.event_id,
                restored_from_version=source.restored_version,
                restored_from_checkpoint=source.restored_checkpoint,
                occurred_at=source.occurred_at,
                applied_at=now,
            )
        )
        if head.version % self.settings.snapshot_every == 0:
            batch.checkpoints.append(
                automatic_snapshot(w, self.settings.compress_above, self.settings.compress_level)
            )
