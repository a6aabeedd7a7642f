"""Where each service's app lives; imported lazily so one worker loads only its own code."""

from __future__ import annotations

import importlib
from typing import Any

from faststream import FastStream

from services.runtime.service import Worker

# Each module defines `Settings` (its settings class) and
# `create_app(settings: Settings | None = None) -> tuple[FastStream, Worker]`.
SERVICES: dict[str, str] = {
    "ingest": "services.ingest.app",
    "embedder": "services.embedder.app",
    "checkpointer": "services.checkpointer.app",
    "audit": "services.audit.app",
}


def create_worker(service: str, **settings: Any) -> tuple[FastStream, Worker]:
    """The service's FastStream app and its worker state; settings override the env."""
    try:
        module = importlib.import_module(SERVICES[service])
    except KeyError:
        raise ValueError(f"unknown service {service!r}; known: {', '.join(SERVICES)}") from None
    settings_obj = module.Settings(**settings) if settings else None
    app, worker = module.create_app(settings_obj)
    return app, worker
