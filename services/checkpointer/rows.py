"""Rows a batch writes, gathered while its events are applied and written with a few
set-based statements (``Batch.flush``); and the per-state working copy."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import NAMESPACE_URL, UUID, uuid5

from contracts.envelope import utcnow
from contracts.state import (
    PARTITIONS,
    StateConflict,
    StateConflictPayload,
    StatePatch,
    StateRestore,
)
from services.checkpointer import repo
from services.checkpointer.patch import Document, Op, parse_pointer
from services.checkpointer.versions import canonical, compress, dumps, state_hash
from services.runtime.bus import STATE
from services.runtime.db import Connection
from services.runtime.dlq import (
    HEADER_DELIVERIES,
    HEADER_KIND,
    HEADER_REASON,
    HEADER_SEQUENCE,
    HEADER_STREAM,
    HEADER_SUBJECT,
    MAX_REASON,
    DeadKind,
)
from services.runtime.outbox import Outbox, Outgoing

NAMESPACE = uuid5(NAMESPACE_URL, "https://engram.dev/checkpointer")
PRODUCER = "checkpointer"


def derived_id(*parts: object) -> UUID:
    """Deterministic ids: a replayed batch makes the same rows and the same Nats-Msg-Id."""
    return uuid5(NAMESPACE, ":".join(str(p) for p in parts))


def touched_partitions(ops: list[Op]) -> set[str]:
    found: set[str] = set()
    for op in ops:
        for path in (op["path"], op.get("from") if op["op"] == "move" else None):
            if path is None:
                continue
            tokens = parse_pointer(path)
            if not tokens:
                return set(PARTITIONS)
            found.add(tokens[0])
    return found


@dataclass
class Working:
    """One state while its batch is applied: the locked row and the current document."""

    head: repo.Head
    doc: Document
    text: bytes | None = None  # canonical JSON of doc, once computed
    touched: set[str] = field(default_factory=set)
    changed: bool = False

    def canonical(self) -> bytes:
        if self.text is None:
            self.text = canonical(self.doc)
        return self.text

    def advance(self, doc: Document, text: bytes, ops: list[Op]) -> None:
        self.doc, self.text = doc, text
        self.head.version += 1
        self.head.state_hash = state_hash(text)
        self.head.modification_count += len(ops)
        self.touched |= touched_partitions(ops)
        self.changed = True

    def update_row(self) -> repo.StateUpdate:
        local, shared, session, persistent = (
            dumps(self.doc[p]) if p in self.touched else None for p in PARTITIONS
        )
        h = self.head
        return repo.StateUpdate(
            state_id=h.state_id,
            version=h.version,
            state_hash=h.state_hash,
            size_bytes=len(self.canonical()),
            modification_count=h.modification_count,
            local_state=local,
            shared_state=shared,
            session_state=session,
            persistent_state=persistent,
        )


def automatic_snapshot(w: Working, threshold: int, level: int) -> repo.CheckpointRow:
    snap = compress(w.canonical(), threshold=threshold, level=level)
    h = w.head
    return repo.CheckpointRow(
        checkpoint_id=derived_id("auto", h.state_id, h.version),
        state_id=h.state_id,
        tenant_id=h.key[0],
        version=h.version,
        checkpoint_type="automatic",
        label=None,
        retention="temporary",
        expires_at=None,
        compression=snap.compression,
        size_bytes=snap.size_bytes,
        snapshot=snap.data,
        state_hash=h.state_hash,
        metadata="{}",
        event_id=None,
    )


def conflict_rows(
    head: repo.Head, event: StatePatch | StateRestore, expected: int
) -> tuple[repo.ConflictRow, Outgoing]:
    tenant, user, agent = head.key
    # event ids are per tenant: two tenants' refused events may share one
    conflict_id = derived_id("conflict", tenant, event.event_id)
    out = StateConflict(
        event_id=conflict_id,
        occurred_at=utcnow(),
        tenant_id=tenant,
        producer=PRODUCER,
        correlation_id=event.correlation_id,
        causation_id=event.event_id,
        payload=StateConflictPayload(
            user_id=user,
            agent_id=agent,
            conflict_id=conflict_id,
            rejected_event_id=event.event_id,
            rejected_type=event.type,
            expected_version=expected,
            current_version=head.version,
            current_state_hash=head.state_hash.hex(),
        ),
    )
    row = repo.ConflictRow(
        conflict_id=conflict_id,
        state_id=head.state_id,
        tenant_id=tenant,
        event_id=event.event_id,
        event_type=event.type,
        expected_version=expected,
        current_version=head.version,
        payload=event.payload.model_dump_json(by_alias=True),
    )
    return row, Outgoing.event(out)


def dead_letter(subject: str, data: bytes, seq: int, reason: str) -> Outgoing:
    """Dead-letters a parked message like the runtime's DLQ does (a parked message was
    acked when it was parked, so the runtime no longer can); its msg id is the one the
    runtime would give it."""
    headers = {
        HEADER_KIND: DeadKind.poison.value,
        HEADER_REASON: " ".join(reason.split())[:MAX_REASON],
        HEADER_SUBJECT: subject,
        HEADER_STREAM: STATE.name,
        HEADER_SEQUENCE: str(seq),
        HEADER_DELIVERIES: "1",
    }
    return Outgoing(f"dlq.{PRODUCER}.{subject}", f"{PRODUCER}:{STATE.name}:{seq}", data, headers)


@dataclass
class Batch:
    outbox: Outbox  # where ``outgoing`` goes, in the batch's transaction
    transitions: list[repo.TransitionRow] = field(default_factory=list)
    checkpoints: list[repo.CheckpointRow] = field(default_factory=list)
    conflicts: list[repo.ConflictRow] = field(default_factory=list)
    outgoing: list[Outgoing] = field(default_factory=list)  # published after commit

    async def flush(self, conn: Connection) -> None:
        await repo.insert_transitions(conn, self.transitions)
        await repo.insert_checkpoints(conn, self.checkpoints)
        await repo.insert_conflicts(conn, self.conflicts)
        await self.outbox.add(conn, self.outgoing)
        self.transitions, self.checkpoints, self.conflicts, self.outgoing = [], [], [], []
