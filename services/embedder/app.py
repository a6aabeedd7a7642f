"""The embedder worker: message, file and memory text into chunks and vectors (pgvector),
knowledge search and embeddings on request. Run with ``engram run embedder`` (or
``faststream run services.embedder.app:app``)."""

from __future__ import annotations

from typing import Annotated

from faststream import ContextRepo, FastStream
from faststream.nats import NatsBroker
from pydantic import Field, TypeAdapter

from contracts.chat import FileUploaded, MessageCreated, MessageDeleted, MessageEdited
from contracts.memory import MEMORY_EVENT_TYPES, MemoryWrite
from contracts.memory_jobs import MEMORY_FORGOTTEN, MemoryForgotten
from services.embedder.engine import Engine
from services.embedder.handlers import ApplyStats, make_apply
from services.embedder.queries import register_queries
from services.embedder.settings import EmbedderSettings
from services.runtime.bus import CHAT, ENGRAM, MEMORY
from services.runtime.pipeline import contract_decoder
from services.runtime.service import Consumes, Worker, build_worker_app

Settings = EmbedderSettings

CHAT_TYPES = (MessageCreated, MessageEdited, MessageDeleted, FileUploaded)
CHAT_SUBJECTS = tuple(t.model_fields["type"].default for t in CHAT_TYPES)
ChatText = Annotated[
    MessageCreated | MessageEdited | MessageDeleted | FileUploaded, Field(discriminator="type")
]
CHAT_TEXT = TypeAdapter[ChatText](ChatText)
MEMORY_WRITE = TypeAdapter[MemoryWrite](MemoryWrite)


def create_embedder(
    settings: EmbedderSettings | None = None,
) -> tuple[FastStream, Worker, Engine, ApplyStats]:
    """The app, the runtime's worker state, and the embedder's own (tests read both)."""
    settings = settings or EmbedderSettings()
    engine = Engine(settings)
    stats = ApplyStats()
    apply = make_apply(engine, stats)
    app, worker = build_worker_app(
        settings,
        [
            Consumes(CHAT, CHAT_SUBJECTS, contract_decoder(CHAT_TEXT), apply, CHAT_TYPES),
            Consumes(
                MEMORY,
                ("memory.write",),
                contract_decoder(MEMORY_WRITE),
                apply,
                MEMORY_EVENT_TYPES,
            ),
            # Memories the memory service erased (forget, expiry): drop their chunks too.
            Consumes(ENGRAM, ("engram.memory.forgotten",), contract_decoder(MEMORY_FORGOTTEN),
                     apply, (MemoryForgotten,)),
        ],
        description="Cuts message, file and memory text into chunks with the model's "
        "tokenizer, embeds them in model batches (a local sentence-transformers model) into "
        "pgvector, answers query.embed and query.knowledge.search (hybrid: HNSW + full "
        "text, fused by reciprocal rank), and announces memory vectors "
        "(engram.embedding.ready).",
    )
    broker = app.broker
    assert isinstance(broker, NatsBroker)
    register_queries(broker, engine)

    @app.on_startup
    async def load_model(context: ContextRepo) -> None:
        # Before the consumers start: chunking needs the model's tokenizer.
        await engine.start(context.get("pool"))
        context.set_global("engine", engine)

    @app.after_startup
    async def start_pump() -> None:
        await engine.start_background(broker.connection.jetstream())

    @app.on_shutdown
    async def stop_pump() -> None:
        # Registered after the runtime's hook: the consumers have drained already.
        await engine.stop()

    return app, worker, engine, stats


def create_app(settings: EmbedderSettings | None = None) -> tuple[FastStream, Worker]:
    app, worker, _, _ = create_embedder(settings)
    return app, worker


def __getattr__(name: str) -> object:
    # `faststream run services.embedder.app:app` works, without building an app (and
    # reading the environment) on every import of this module.
    if name == "app":
        return create_app()[0]
    raise AttributeError(name)
