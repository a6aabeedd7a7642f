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
    "memory": "services.memory.app",
    "checkpointer": "services.checkpointer.app",
    "audit": "services.audit.app",
}

# Command groups that services add to `engram` (module, attribute, help).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "state": ("services.checkpointer.cli", "state_cli", "Agent state: retention."),
    "audit": ("services.audit.cli", "audit_cli", "Audit trail: verify, export, retain."),
    "trigger": ("services.memory.cli", "trigger_cli", "Jobs for schedulers: consolidate."),
}


# Single commands that services add to `engram` (module, function).
SINGLE_COMMANDS: dict[str, tuple[str, str]] = {
    "reembed": ("services.embedder.cli", "reembed"),
}


def single_commands() -> dict[str, Any]:
    return {
        name: getattr(importlib.import_module(module), attr)
        for name, (module, attr) in SINGLE_COMMANDS.items()
    }


def command_groups() -> dict[str, tuple[Any, str]]:
    return {
        name: (getattr(importlib.import_module(module), attr), help_text)
        for name, (module, attr, help_text) in COMMANDS.items()
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
