"""How a service declares itself to the runtime.

Each service package exports one ``ServiceSpec`` (``services/<service>/spec.py``): its
name, schema and role, its settings class, where its parts are assembled, its CLI
commands and what `engram dev` shows of its data. The composition root
(``services/catalog.py``) lists the specs; the runtime — the worker app, the CLI,
`engram dev`, migrations, status and the AsyncAPI documents — iterates over them and
names no service. The parts are imported only when a worker of that service is built,
so one worker (or the CLI) loads only its own code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from contracts.envelope import Envelope
from services.runtime.bus import Stream
from services.runtime.component import Component
from services.runtime.consumer import WaitsFor
from services.runtime.migrate import ServiceSchema
from services.runtime.outbox import Outbox
from services.runtime.pipeline import ApplyBatch, Decoder
from services.runtime.router import QueryRoute
from services.runtime.settings import WorkerSettings


@dataclass(frozen=True)
class Consumes:
    """One durable consumer of a service: which stream and subjects, how to read, what to do."""

    stream: Stream
    subjects: tuple[str, ...]
    decode: Decoder[Any]
    apply: ApplyBatch[Any]
    contracts: Sequence[type[Envelope]] = field(default=())  # for the AsyncAPI document
    # With commits_in_flight > 1: whether a batch must wait for an earlier one still
    # committing, (earlier events, later events) -> bool.
    waits_for: WaitsFor[Any] | None = None


@dataclass(frozen=True)
class Assembly:
    """A service's parts, built from its settings: what it consumes, answers, runs in the
    background and publishes (through the runtime's outbox)."""

    consumes: Sequence[Consumes]
    queries: Sequence[QueryRoute] = ()
    components: Sequence[Component] = ()
    publishes: Sequence[type[Envelope]] = ()  # documented; a non-empty list runs the drain
    # Query subjects it asks other services (core request/reply): its NATS user may
    # publish them (services/runtime/nats_auth.py), and nothing it does not declare.
    asks: Sequence[str] = ()


@dataclass(frozen=True)
class Command:
    """A CLI command a service adds to `engram`: a Typer group (with ``help``) or a
    function, named ``module:attribute`` and imported when the CLI starts."""

    name: str
    target: str
    help: str = ""

    def load(self) -> Any:
        return _load(self.target)


@dataclass(frozen=True)
class DevView:
    """A table `engram dev` shows of the service's data: ``sql`` returns the rows, newest
    first, in ``columns`` order, at most ``$1`` of them (read with a superuser's view)."""

    title: str
    columns: tuple[str, ...]
    sql: str


@dataclass(frozen=True)
class StatusFact:
    """A value `engram status` shows of the service (e.g. the embedder's active model):
    ``sql`` returns one value (read with the status command's login)."""

    label: str
    sql: str


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    schema: str
    settings: type[WorkerSettings]
    assemble: str  # "module:function", function(settings) -> Assembly
    description: str
    docs: str  # the docs page that describes its tables, e.g. "memory.md"
    privileges: str = "SELECT, INSERT, UPDATE, DELETE"
    commands: tuple[Command, ...] = ()
    dev_view: DevView | None = None
    status_facts: tuple[StatusFact, ...] = ()

    @cached_property
    def outbox(self) -> Outbox:
        """The service's one outbox: its handlers add to it, the worker's drain empties it."""
        return Outbox(self.schema)

    @property
    def store(self) -> ServiceSchema:
        return ServiceSchema(self.name, self.schema, self.privileges)

    @property
    def role(self) -> str:
        return self.store.role

    def assembly(self, settings: WorkerSettings) -> Assembly:
        build: Callable[[WorkerSettings], Assembly] = _load(self.assemble)
        return build(settings)


class Catalog:
    """The services of one deployment, in start order."""

    def __init__(self, specs: Sequence[ServiceSpec]) -> None:
        self._specs = {spec.name: spec for spec in specs}

    def __iter__(self) -> Iterator[ServiceSpec]:
        return iter(self._specs.values())

    @property
    def names(self) -> list[str]:
        return list(self._specs)

    def get(self, name: str) -> ServiceSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise ValueError(f"unknown service {name!r}; known: {', '.join(self._specs)}") from None

    def schemas(self, names: Sequence[str] | None = None) -> list[ServiceSchema]:
        return [self.get(n).store for n in names] if names else [s.store for s in self]


def _load(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
