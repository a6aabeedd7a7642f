"""engram.embedding.ready: a memory's vector, announced through the runtime's outbox in the
transaction that makes it complete (the pump storing its last chunk's vector, a batch
whose chunks all reused known vectors, or a model switch), so it is published only
after that commits. Its event id is derived from (tenant, memory, model, content hash) —
memory ids are chosen by producers, so two tenants may share one — and with the tenant it
is the ``Nats-Msg-Id``: the same vector announced again (a redelivered write, chunks
queued again, a republished outbox row) is dropped by JetStream within the duplicate
window, and by the memory service's inbox after it."""

from __future__ import annotations

import socket
from collections.abc import Sequence

from contracts.embedding import EmbeddingReady, EmbeddingReadyPayload, SourceType
from contracts.envelope import utcnow
from services.embedder import repo
from services.embedder.logic import embedding_event_id, mean_unit
from services.runtime.db import Connection
from services.runtime.outbox import Outbox, Outgoing

PAGE = 500  # memories whose vectors one statement averages


class Announcer:
    """Adds the engram.embedding.ready events of complete memories to the outbox."""

    def __init__(self, outbox: Outbox, producer: str | None = None) -> None:
        self.outbox = outbox
        self.producer = producer or f"embedder@{socket.gethostname()}"
        self.announced = 0  # events added to the outbox (committed or not)

    async def memories(
        self, conn: Connection, memories: Sequence[repo.MemoryKey], model_id: str
    ) -> int:
        """In the caller's transaction: an event for each of ``memories`` whose chunks
        all have a vector of ``model_id`` now; how many."""
        added = 0
        keys = sorted(set(memories))
        for start in range(0, len(keys), PAGE):
            ready = await repo.ready_memories(conn, keys[start : start + PAGE], model_id)
            added += await self.outbox.add(conn, [self._event(m, model_id) for m in ready])
        self.announced += added
        return added

    def _event(self, memory: repo.ReadyMemory, model_id: str) -> Outgoing:
        vector = mean_unit([memory.vector])
        event = EmbeddingReady(
            event_id=embedding_event_id(
                memory.tenant_id, memory.memory_id, model_id, memory.content_hash
            ),
            occurred_at=utcnow(),
            tenant_id=memory.tenant_id,
            producer=self.producer,
            causation_id=memory.causation_id,
            payload=EmbeddingReadyPayload(
                source_type=SourceType.memory,
                source_id=memory.memory_id,
                model_id=model_id,
                dimensions=len(vector),
                vector=vector,
                content_hash=memory.content_hash,
                chunks=memory.chunks,
            ),
        )
        return Outgoing.event(event)
