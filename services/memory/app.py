"""The memory worker's parts: typed agent memories from MEMORY, session summaries from
CHAT, vectors from engram.embedding.ready; consolidation jobs and access counts in the
background; ``query.memory.search``. Run with ``engram run memory``."""

from __future__ import annotations

from collections.abc import Sequence

from faststream import FastStream
from pydantic import TypeAdapter

from contracts.embedding import EMBED_SUBJECT, EmbeddingReady
from contracts.envelope import Envelope
from contracts.memory_search import MEMORY_SEARCH_SUBJECT, MemorySearchRequest
from services.memory.access import AccessLog
from services.memory.handlers import CHAT_TYPES, MEMORY_TYPES, ChatEvent, Handlers, MemoryEvent
from services.memory.notices import PUBLISHES
from services.memory.query_vector import EmbedderUnavailable
from services.memory.runner import JobRunner
from services.memory.search import MemorySearch
from services.memory.settings import MemorySettings
from services.memory.spec import SPEC
from services.memory.store import StoreCommands
from services.runtime.bus import CHAT, ENGRAM, MEMORY
from services.runtime.pipeline import contract_decoder
from services.runtime.router import QueryRoute
from services.runtime.service import build_worker_app
from services.runtime.spec import Assembly, Consumes
from services.runtime.worker import Worker

SEARCHES_AT_ONCE = 16  # per replica; each holds a search connection only for its SELECT


def assemble(settings: MemorySettings) -> Assembly:
    outbox = SPEC.outbox
    handlers = Handlers(settings, outbox)
    # In start order: searches count accesses into the log, which stops (and writes what
    # is left) after the searches; the runner starts last, once everything else runs.
    access = AccessLog(settings.access_flush_s)
    search = MemorySearch(settings, access)
    store = StoreCommands(settings)
    return Assembly(
        consumes=[
            Consumes(
                MEMORY,
                _subjects(MEMORY_TYPES),
                contract_decoder(TypeAdapter[MemoryEvent](MemoryEvent)),
                handlers.apply_memory,
                MEMORY_TYPES,
            ),
            Consumes(
                CHAT,
                _subjects(CHAT_TYPES),
                contract_decoder(TypeAdapter[ChatEvent](ChatEvent)),
                handlers.apply_chat,
                CHAT_TYPES,
            ),
            Consumes(
                ENGRAM,
                _subjects((EmbeddingReady,)),
                contract_decoder(TypeAdapter[EmbeddingReady](EmbeddingReady)),
                handlers.apply_vectors,
                (EmbeddingReady,),
            ),
        ],
        queries=[
            QueryRoute(
                MEMORY_SEARCH_SUBJECT,
                MemorySearchRequest,
                search.answer,
                description="The memories of one agent that matter now "
                "(MemorySearchRequest -> MemorySearchReply | QueryError).",
                hint="ask with a smaller top_k",
                unavailable=(EmbedderUnavailable,),
                max_workers=SEARCHES_AT_ONCE,
            ),
            *store.routes(),
        ],
        components=[access, search, store, JobRunner(settings, outbox)],
        publishes=PUBLISHES,
        asks=(EMBED_SUBJECT,),  # searches and store puts embed through the embedder
    )


def create_app(settings: MemorySettings | None = None) -> tuple[FastStream, Worker]:
    return build_worker_app(SPEC, settings or MemorySettings())


def _subjects(types: Sequence[type[Envelope]]) -> tuple[str, ...]:
    return tuple(t.model_fields["type"].default for t in types)
