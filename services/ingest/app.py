"""The ingest worker: CHAT events into conversations, messages (every version), sessions
and files. Run with ``engram run ingest`` (or ``faststream run services.ingest.app:app``)."""

from __future__ import annotations

from faststream import FastStream

from contracts.chat import CHAT_EVENT, CHAT_EVENT_TYPES
from services.ingest.handlers import apply_chat_events
from services.ingest.logic import must_wait
from services.ingest.settings import IngestSettings
from services.runtime.bus import CHAT
from services.runtime.pipeline import contract_decoder
from services.runtime.service import Consumes, Worker, build_worker_app

Settings = IngestSettings


def create_app(settings: IngestSettings | None = None) -> tuple[FastStream, Worker]:
    return build_worker_app(
        settings or IngestSettings(),
        [
            Consumes(
                CHAT,
                CHAT.subjects,
                contract_decoder(CHAT_EVENT),
                apply_chat_events,
                contracts=CHAT_EVENT_TYPES,
                waits_for=must_wait,
            )
        ],
        description="Stores conversations, messages with full edit history, sessions with "
        "counters, and files, exactly once in effect.",
    )


def __getattr__(name: str) -> object:
    # `faststream run services.ingest.app:app` works, without building an app (and reading
    # the environment) on every import of this module.
    if name == "app":
        return create_app()[0]
    raise AttributeError(name)
