"""The embedder worker's parts: message, file and memory text into chunks and vectors
(pgvector), knowledge search and embeddings on request, memory vectors announced through
the outbox. Run with ``engram run embedder``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from faststream import FastStream
from pydantic import Field, TypeAdapter

from contracts.chat import FileUploaded, MessageCreated, MessageDeleted, MessageEdited
from contracts.embedding import EmbeddingReady
from contracts.knowledge import KNOWLEDGE_EVENT, KNOWLEDGE_EVENT_TYPES
from contracts.memory import MEMORY_EVENT_TYPES, MemoryWrite
from contracts.memory_jobs import MEMORY_FORGOTTEN, MemoryForgotten
from services.embedder.active_model import ActiveModel
from services.embedder.announce import Announcer
from services.embedder.handlers import SourceWriter
from services.embedder.knowledge import KnowledgeWriter
from services.embedder.pump import Pump
from services.embedder.queries import query_routes
from services.embedder.settings import EmbedderSettings
from services.embedder.spec import SPEC
from services.runtime.bus import CHAT, ENGRAM, KNOWLEDGE, MEMORY
from services.runtime.pipeline import contract_decoder
from services.runtime.service import build_worker_app
from services.runtime.spec import Assembly, Consumes
from services.runtime.worker import Worker

CHAT_TYPES = (MessageCreated, MessageEdited, MessageDeleted, FileUploaded)
CHAT_SUBJECTS = tuple(t.model_fields["type"].default for t in CHAT_TYPES)
ChatText = Annotated[
    MessageCreated | MessageEdited | MessageDeleted | FileUploaded, Field(discriminator="type")
]
CHAT_TEXT = TypeAdapter[ChatText](ChatText)
MEMORY_WRITE = TypeAdapter[MemoryWrite](MemoryWrite)


def assemble(settings: EmbedderSettings) -> Assembly:
    active = ActiveModel(settings)
    announcer = Announcer(SPEC.outbox)
    apply = SourceWriter(active, announcer)
    return Assembly(
        consumes=[
            Consumes(CHAT, CHAT_SUBJECTS, contract_decoder(CHAT_TEXT), apply, CHAT_TYPES),
            Consumes(
                MEMORY, ("memory.write",), contract_decoder(MEMORY_WRITE), apply, MEMORY_EVENT_TYPES
            ),
            # Memories the memory service erased (forget, expiry): drop their chunks too.
            Consumes(
                ENGRAM,
                ("engram.memory.forgotten",),
                contract_decoder(MEMORY_FORGOTTEN),
                apply,
                (MemoryForgotten,),
            ),
            # Agents' knowledge sources and documents (docs/knowledge.md).
            Consumes(
                KNOWLEDGE,
                KNOWLEDGE.subjects,
                contract_decoder(KNOWLEDGE_EVENT),
                KnowledgeWriter(active),
                KNOWLEDGE_EVENT_TYPES,
            ),
        ],
        queries=query_routes(active),
        # In this order: the model first (chunking in the handlers and the pump need it).
        components=[active, Pump(active, settings, announcer)],
        publishes=[EmbeddingReady],
    )


def create_app(settings: EmbedderSettings | None = None) -> tuple[FastStream, Worker]:
    return build_worker_app(SPEC, settings or EmbedderSettings())


@dataclass(frozen=True)
class Parts:
    """The embedder's running parts, as tests and tools read them."""

    active: ActiveModel
    pump: Pump
    writer: SourceWriter


def parts(worker: Worker) -> Parts:
    writer = worker.assembly.consumes[0].apply
    assert isinstance(writer, SourceWriter)
    return Parts(worker.component(ActiveModel), worker.component(Pump), writer)
