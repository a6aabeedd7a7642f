"""What a running worker holds: its settings and assembly, the consumers and components
it started, its counters and its health; tests, tools and `engram dev` read it. Built and
run by ``service.py``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TypeVar

from services.runtime.bus import ConsumerSpec, Stream
from services.runtime.component import Component, Health
from services.runtime.consumer import PullConsumer
from services.runtime.outbox import Outbox
from services.runtime.probes import ProbeServer
from services.runtime.router import QueryStats
from services.runtime.settings import WorkerSettings
from services.runtime.spec import Assembly
from services.runtime.supervise import Supervisor
from services.runtime.telemetry import Stats
from services.runtime.tracing import Tracing

C = TypeVar("C", bound=Component)


@dataclass
class Worker:
    """What a running worker holds; tests and `engram dev` read its stats."""

    settings: WorkerSettings
    assembly: Assembly
    outbox: Outbox
    consumers: list[PullConsumer] = field(default_factory=list)
    components: list[Component] = field(default_factory=list)  # started, in start order
    stats: Stats = field(default_factory=Stats)
    queries: QueryStats = field(default_factory=QueryStats)
    supervisor: Supervisor = field(init=False)
    started: bool = False  # its consumers pull (readiness)
    probes: ProbeServer | None = None
    http_port: int | None = None  # the bound port of its metrics and probes, when served
    tracing: Tracing = field(default_factory=Tracing.off)

    def __post_init__(self) -> None:
        # After a failure, shutdown drains (at most drain_timeout_s) on a connection that
        # may be gone; then a few seconds for the pool and the broker to close.
        self.supervisor = Supervisor(
            f"engram {self.settings.service}", grace_s=self.settings.drain_timeout_s + 5.0
        )

    def component(self, kind: type[C]) -> C:
        """The running component of that class (tests and tools read them)."""
        for component in self.components:
            if isinstance(component, kind):
                return component
        raise LookupError(f"no running {kind.__name__} in {self.settings.service}")

    def health(self) -> list[Health]:
        since = self.stats.database_unreachable_since
        database = Health(
            "database",
            since is None,
            "" if since is None else f"unreachable for {time.time() - since:.0f}s; pulling nothing",
        )
        return [
            database,
            *(consumer.health() for consumer in self.consumers),
            *(component.health() for component in self.components),
        ]

    def spec_for(self, stream: Stream, subjects: tuple[str, ...]) -> ConsumerSpec:
        s = self.settings
        return ConsumerSpec(
            stream=stream,
            durable=s.service,
            filter_subjects=subjects,
            max_deliver=s.max_deliver,
            ack_wait_s=s.ack_wait_s,
            max_ack_pending=s.max_ack_pending,
        )
