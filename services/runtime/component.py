"""Components: the background parts of a worker, whose lifecycle the worker app owns.

A service lists its components in its assembly (``spec.py``); the app starts them in that
order once the broker is connected and before the consumers pull (a consumer's handler
may rely on one), and stops them in reverse order after the consumers have drained. Each
reports its health, which ``engram dev``, the metrics and the health probes show
(``probes.py``); one that has measures of its own is ``telemetry.Measured``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import asyncpg
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from services.runtime.settings import WorkerSettings

if TYPE_CHECKING:
    from services.runtime.outbox import Outbox
    from services.runtime.supervise import Supervisor


@dataclass(frozen=True)
class WorkerContext:
    """What a component is given at start: the worker's connections and its settings."""

    settings: WorkerSettings
    pool: asyncpg.Pool
    nc: NatsClient
    outbox: Outbox
    supervisor: Supervisor

    @property
    def js(self) -> JetStreamContext:
        return self.nc.jetstream()


@dataclass(frozen=True)
class Health:
    """A component's own account of itself: working, or why not."""

    name: str
    ok: bool
    detail: str = ""


class Component(Protocol):
    name: str

    async def start(self, ctx: WorkerContext) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> Health: ...


class NotStarted(RuntimeError):
    """A part was used before its component started (or after it stopped); queries map
    it to ``unavailable``."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is not running yet (the worker is starting or stopping)")
