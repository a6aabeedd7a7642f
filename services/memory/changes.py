"""What a consolidation step writes: the memories it derives (``derived_memory``) and
its ``Changes``, written in the step's one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.memory import repo, repo_jobs, repo_steps
from services.memory.job_context import JobContext
from services.memory.logic import content_hash, derived_id, estimate_tokens
from services.memory.rows import Consolidation, Link, MemoryRow, Supersession


def derived_memory(
    job: JobContext,
    origin: str,
    members: list[MemoryRow],
    *,
    memory_type: str,
    text: str,
    content: dict[str, Any],
    vector: NDArray[np.float32],
    model: str,
    importance: float,
) -> MemoryRow:
    # content: JSON of the memory type's content model.
    users = {m.user_id for m in members}
    conversations = {m.conversation_id for m in members}
    expiries = [m.expires_at for m in members]
    accessed = [m.last_accessed_at for m in members if m.last_accessed_at]
    return MemoryRow(
        memory_id=derived_id(
            origin, job.row.job_id, job.agent, *sorted(str(m.memory_id) for m in members)
        ),
        user_id=users.pop() if len(users) == 1 else None,
        conversation_id=conversations.pop() if len(conversations) == 1 else None,
        memory_type=memory_type,
        text=text,
        content=content,
        content_hash=content_hash(text),
        tokens=estimate_tokens(text),
        importance=importance,
        decay_rate=min(m.decay_rate for m in members),
        access_count=sum(m.access_count for m in members),
        last_accessed_at=max(accessed) if accessed else None,
        decayed_at=max(m.decayed_at for m in members),
        expires_at=None if None in expiries else max(e for e in expiries if e is not None),
        source_message_id=members[0].source_message_id,
        origin=origin,
        written_at=job.clock,
        model_id=model,
        embedding=vector,
    )


@dataclass
class Changes:
    """What a step writes, all in its one transaction."""

    created: list[MemoryRow] = field(default_factory=list)
    superseded: list[Supersession] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    records: list[Consolidation] = field(default_factory=list)

    @property
    def tokens_saved(self) -> int:
        return sum(r.tokens_saved for r in self.records)

    async def write(self, job: JobContext, step: str) -> None:
        if job.dry_run:
            return
        await repo_steps.insert_derived(job.conn, job.tenant, job.agent, self.created)
        await repo_steps.supersede(job.conn, job.tenant, self.superseded)
        if self.links:
            await repo.add_links(job.conn, job.tenant, self.links)
        await repo_jobs.record(job.conn, job.row.key, step, self.records)
