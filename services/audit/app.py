"""The audit writer: every message on every stream, once, into an append-only hash chain
per tenant. Run with ``engram run audit`` (or ``faststream run services.audit.app:app``)."""

from __future__ import annotations

from faststream import FastStream

from services.audit.handlers import chain_appender, record_decoder
from services.audit.repo import Partitions
from services.audit.settings import AuditSettings
from services.runtime.bus import STREAMS
from services.runtime.service import Consumes, Worker, build_worker_app

Settings = AuditSettings


def create_app(settings: AuditSettings | None = None) -> tuple[FastStream, Worker]:
    settings = settings or AuditSettings()
    decode = record_decoder(settings.redaction(), keep_raw=settings.keep_malformed_raw)
    # One per process: all five consumers share what it knows about partitions.
    apply = chain_appender(Partitions(months_ahead=settings.partitions_ahead))
    return build_worker_app(
        settings,
        [Consumes(stream, stream.subjects, decode, apply) for stream in STREAMS],
        description="Records every message of every stream once, in an append-only, "
        "hash-chained trail per tenant (verify with `engram audit verify`).",
    )


def __getattr__(name: str) -> object:
    # `faststream run services.audit.app:app` works, without building an app (and reading
    # the environment) on every import of this module.
    if name == "app":
        return create_app()[0]
    raise AttributeError(name)
