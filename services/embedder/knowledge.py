"""Applies KNOWLEDGE events (contracts/knowledge.py) inside the runtime's transaction, and
copies chat uploads into the file sources that cover them.

A source's documents are embedder sources of type ``document`` (plan.py folds them like
messages: the newest occurred_at wins, equal text is not chunked again), so they are
chunked here and embedded by the pump after COMMIT like any other chunk. The order rules
are in knowledge_logic.py; every event is applied in delivery order, one at a time, under
its source's lock (knowledge events are few and small next to chat traffic)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

from contracts.chat import FileUploaded
from contracts.embedding import SourceType
from contracts.knowledge import (
    DocumentUpserted,
    KnowledgeEvent,
    KnowledgeSourceType,
    SourcePayload,
    SourceRemoved,
)
from services.embedder import repo, repo_knowledge
from services.embedder.active_model import ActiveModel
from services.embedder.knowledge_logic import (
    Action,
    covers,
    decide,
    document_uuid,
    file_config,
    retry_reason,
)
from services.embedder.logic import Chunk
from services.embedder.plan import Change, SourceKey, SourceState, SourceWrite, fold
from services.runtime.db import Connection


def _document_key(tenant_id: str, knowledge_source_id: UUID, document_id: str) -> SourceKey:
    return SourceKey(
        tenant_id, SourceType.document, document_uuid(knowledge_source_id, document_id)
    )


async def write_documents(conn: Connection, active: ActiveModel, changes: list[Change]) -> None:
    """Fold ``changes`` of documents over their stored rows; chunk and store the new texts."""
    keys = list(dict.fromkeys(c.key for c in changes))
    plan = fold(changes, await repo.load_states(conn, keys))
    writes = list(plan.writes.values())
    if writes:
        await repo.save_sources(conn, writes)
    rechunk = [w for w in writes if w.rechunk]
    if rechunk:
        texts = [w for w in rechunk if w.text]
        pieces = active.chunk([w.text or "" for w in texts])
        chunks = {w.key: c for w, c in zip(texts, pieces, strict=True)}
        await repo.replace_chunks(conn, rechunk, chunks, active.model.model_id)


async def copy_uploads(
    conn: Connection, active: ActiveModel, tenant_id: str, source: SourcePayload
) -> None:
    """Copy the stored uploads a file source covers as its documents (their chunks as
    they are: equal text, so the vectors already made are reused, not computed again)."""
    config = file_config(source.type, source.configuration)
    if not (config.file_ids or config.conversation_ids):
        return
    found = await repo_knowledge.uploads(
        conn, tenant_id, list(config.file_ids), list(config.conversation_ids)
    )
    keys = {up.file_id: _document_key(tenant_id, source.source_id, str(up.file_id)) for up in found}
    stored = await repo.load_states(conn, list(keys.values()))
    writes: list[SourceWrite] = []
    chunks: dict[SourceKey, list[Chunk]] = {}
    for up in found:
        key, cur = keys[up.file_id], stored.get(keys[up.file_id])
        if cur is not None and (cur.content_hash == up.content_hash or cur.text_at > up.text_at):
            continue  # copied already, or a newer text of it is stored
        state = SourceState(
            conversation_id=up.conversation_id,
            agent_id=source.agent_id,
            source_at=up.source_at,
            content_hash=up.content_hash,
            text_at=up.text_at,
            indexed=True,
            deleted=False,
            event_id=up.event_id,
            knowledge_source_id=source.source_id,
            document_id=str(up.file_id),
        )
        writes.append(SourceWrite(key, state, True, None))
        chunks[key] = up.chunks
    if writes:
        await repo.save_sources(conn, writes)
        await repo.replace_chunks(conn, writes, chunks, active.model.model_id)


async def cover_uploads(
    conn: Connection, active: ActiveModel, uploads: Sequence[FileUploaded]
) -> None:
    """Copy each upload into the file sources that cover it (called by the CHAT batch,
    after the uploads' own rows are written)."""
    by_tenant: dict[str, list[FileUploaded]] = {}
    for up in uploads:
        by_tenant.setdefault(up.tenant_id, []).append(up)
    for tenant_id, ups in sorted(by_tenant.items()):
        await repo_knowledge.lock_uploads(conn, tenant_id)
        sources = await repo_knowledge.file_sources(conn, tenant_id)
        changes: list[Change] = []
        touched: set[UUID] = set()
        for fs in sources:
            config = file_config(KnowledgeSourceType.file, fs.configuration)
            for up in ups:
                f = up.payload
                if not covers(config, f.file_id, f.conversation_id):
                    continue
                text = f.extracted_text or ""
                changes.append(
                    Change(
                        up.event_id,
                        _document_key(tenant_id, fs.source_id, str(f.file_id)),
                        up.occurred_at,
                        "set",
                        text=text,
                        indexed=bool(text.strip()),
                        conversation_id=f.conversation_id,
                        agent_id=fs.agent_id,
                        knowledge_source_id=fs.source_id,
                        document_id=str(f.file_id),
                    )
                )
                touched.add(fs.source_id)
        if changes:
            await write_documents(conn, active, changes)
            await repo_knowledge.refresh(conn, tenant_id, sorted(touched))


@dataclass
class KnowledgeWriter:
    """The ``ApplyBatch`` of the embedder's KNOWLEDGE consumer."""

    active: ActiveModel

    async def __call__(
        self, conn: Connection, events: Sequence[KnowledgeEvent]
    ) -> Mapping[UUID, str]:
        # One lock per tenant, taken first and in a fixed order (replicas never wait on each
        # other in a cycle): a tenant's knowledge events and its uploads' matching take
        # turns, so an upload is never copied into a source being removed.
        for tenant in sorted({e.tenant_id for e in events}):
            await repo_knowledge.lock_uploads(conn, tenant)
        retry: dict[UUID, str] = {}
        for event in events:
            reason = await self._apply(conn, event)
            if reason:
                retry[event.event_id] = reason
        return retry

    async def _apply(self, conn: Connection, event: KnowledgeEvent) -> str | None:
        tenant, p = event.tenant_id, event.payload
        kind = event.type.removeprefix("knowledge.")
        stored = await repo_knowledge.load_source(conn, tenant, p.source_id)
        action = decide(kind, event.occurred_at, stored)
        if action is Action.retry:
            return retry_reason(event.type, p.source_id)
        if action is Action.ignore:
            return None
        if isinstance(event, SourceRemoved):
            await repo_knowledge.remove_source(
                conn, tenant, p.source_id, event.occurred_at, event.event_id
            )
            return None
        if isinstance(event, DocumentUpserted):
            assert stored is not None
            d = event.payload
            text = d.text if not d.title else f"{d.title}\n\n{d.text}"
            change = Change(
                event.event_id,
                _document_key(tenant, d.source_id, d.document_id),
                event.occurred_at,
                "set",
                text=text,
                indexed=bool(d.text.strip()),
                agent_id=stored.agent_id,
                knowledge_source_id=d.source_id,
                document_id=d.document_id,
            )
            await write_documents(conn, self.active, [change])
        else:
            source = event.payload
            assert isinstance(source, SourcePayload)
            await repo_knowledge.put_source(conn, tenant, source, event.occurred_at, event.event_id)
            if stored is not None and stored.agent_id != source.agent_id:
                await repo_knowledge.move_documents(conn, tenant, source.source_id, source.agent_id)
            config = file_config(source.type, source.configuration)
            await repo_knowledge.drop_uncovered_uploads(
                conn, tenant, source.source_id, list(config.file_ids), list(config.conversation_ids)
            )
            await copy_uploads(conn, self.active, tenant, source)
        await repo_knowledge.refresh(conn, tenant, [p.source_id])
        return None
