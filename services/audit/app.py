"""The audit writer's parts: every message on every stream, once, into an append-only
hash chain per tenant. Run with ``engram run audit``."""

from __future__ import annotations

from faststream import FastStream

from services.audit.handlers import chain_appender, record_decoder
from services.audit.repo import Partitions
from services.audit.settings import AuditSettings
from services.audit.spec import SPEC
from services.runtime.bus import STREAMS
from services.runtime.service import build_worker_app
from services.runtime.spec import Assembly, Consumes
from services.runtime.worker import Worker


def assemble(settings: AuditSettings) -> Assembly:
    decode = record_decoder(settings.redaction(), keep_raw=settings.keep_malformed_raw)
    # One per process: all five consumers share what it knows about partitions.
    apply = chain_appender(Partitions(months_ahead=settings.partitions_ahead))
    return Assembly(
        consumes=[Consumes(stream, stream.subjects, decode, apply) for stream in STREAMS]
    )


def create_app(settings: AuditSettings | None = None) -> tuple[FastStream, Worker]:
    return build_worker_app(SPEC, settings or AuditSettings())
