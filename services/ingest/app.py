"""The ingest worker's parts: CHAT events into conversations, messages (every version),
sessions and files, and the query.chat.* subjects that read them back. Run with
``engram run ingest``."""

from __future__ import annotations

from faststream import FastStream

from contracts.chat import CHAT_EVENT, CHAT_EVENT_TYPES
from services.ingest.api import query_routes
from services.ingest.handlers import apply_chat_events
from services.ingest.logic import must_wait
from services.ingest.queries import ChatReads
from services.ingest.settings import IngestSettings
from services.ingest.spec import SPEC
from services.runtime.bus import CHAT
from services.runtime.pipeline import contract_decoder
from services.runtime.service import build_worker_app
from services.runtime.spec import Assembly, Consumes
from services.runtime.worker import Worker


def assemble(settings: IngestSettings) -> Assembly:
    reads = ChatReads(settings.query_pool_max)
    return Assembly(
        consumes=[
            Consumes(
                CHAT,
                CHAT.subjects,
                contract_decoder(CHAT_EVENT),
                apply_chat_events,
                contracts=CHAT_EVENT_TYPES,
                waits_for=must_wait,
            )
        ],
        queries=query_routes(reads, settings.query_pool_max),
        components=[reads],
    )


def create_app(settings: IngestSettings | None = None) -> tuple[FastStream, Worker]:
    return build_worker_app(SPEC, settings or IngestSettings())
