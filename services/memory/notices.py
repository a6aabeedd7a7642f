"""The events the memory service announces, and how they reach the bus.

Every announcement is queued in the runtime's outbox on the connection of the transaction
whose effect it announces, and published only after that transaction commits. Each
event's id is derived from what caused it (the event, or the job), so a redelivered
cause queues the same id again, which JetStream's duplicate window and every inbox drop.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from contracts.envelope import Envelope, utcnow
from contracts.memory import MemoryWrite
from contracts.memory_jobs import (
    MAX_FORGOTTEN_IDS,
    ForgottenPayload,
    MemoryConsolidated,
    MemoryForgotten,
)
from services.memory.logic import derived_id
from services.memory.sessions import SERVICE_PRODUCER
from services.runtime.db import Connection
from services.runtime.outbox import Outbox, Outgoing

# What the service publishes: a session's summary as an ordinary memory.write (stored by
# this service's own MEMORY consumer, embedded by the embedder), a job's summary, and the
# ids of memories erased (so that other services drop their copies).
PUBLISHES: tuple[type[Envelope], ...] = (MemoryWrite, MemoryConsolidated, MemoryForgotten)


async def announce(outbox: Outbox, conn: Connection, events: Sequence[Envelope]) -> None:
    """Queue ``events`` in the transaction open on ``conn``."""
    await outbox.add(conn, [Outgoing.event(e) for e in events])


def forgotten_events(
    tenant_id: str,
    cause_id: UUID,
    ids: Sequence[UUID],
    reason: str,
    correlation_id: UUID | None = None,
) -> list[MemoryForgotten]:
    """One notice per ``MAX_FORGOTTEN_IDS`` erased memories, so that a forget of any size
    announces every one of them in messages that fit the bus."""
    chunks = [ids[i : i + MAX_FORGOTTEN_IDS] for i in range(0, len(ids), MAX_FORGOTTEN_IDS)]
    return [
        MemoryForgotten(
            # The first keeps the id a single notice always had (a redelivery re-derives it).
            event_id=derived_id("forgotten", cause_id, *([n] if n else [])),
            occurred_at=utcnow(),
            tenant_id=tenant_id,
            producer=SERVICE_PRODUCER,
            correlation_id=correlation_id,
            causation_id=cause_id,
            payload=ForgottenPayload(memory_ids=list(chunk), reason=reason),
        )
        for n, chunk in enumerate(chunks)
    ]
