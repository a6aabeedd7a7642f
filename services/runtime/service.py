"""Builds a worker's FastStream app from its service's spec; the same for every service.

The pool is made in the lifespan and injected through FastStream's context (``pool``).
Once the broker is connected: the streams it reads and writes must exist (the bus setup,
an admin's step, creates them; a worker that finds one missing says so and exits, so that
its supervisor restarts it), the components start (in their
order; the outbox drain first when the service publishes), then the consumers. At
shutdown the consumers drain first, all at once, then the components stop in reverse order, so the
drain publishes what the last batches committed.

With ``<SERVICE>_HTTP_PORT`` set, the worker's metrics and health probes (``probes.py``)
are served from the moment the pool exists (before the broker connects, so a worker that
cannot reach NATS shows it) until after everything else stopped.

With an OTLP endpoint configured (``tracing.py``), the worker traces its batches, events,
queries and outbox publishes; what is left of its spans is exported when it stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from faststream import ContextRepo, FastStream
from faststream.nats import NatsBroker, NatsUserPassword
from faststream.nats.security import NatsSecurity
from faststream.specification import AsyncAPI
from nats.js import JetStreamContext

from services.runtime.bus import DLQ, BusNotReady, ConsumerSpec, Stream, require_streams, stream_of
from services.runtime.component import Component, Health, WorkerContext
from services.runtime.consumer import PullConsumer, stop_all
from services.runtime.db import create_pool
from services.runtime.dlq_once import OnceDeadLetters
from services.runtime.docs import describe_consumers
from services.runtime.errors import describe
from services.runtime.gctune import tune_gc
from services.runtime.inbox import Inbox
from services.runtime.logs import ACCESS_LOGGER
from services.runtime.nats_auth import inbox_prefix
from services.runtime.nats_servers import parse_servers
from services.runtime.outbox import Outbox, OutboxDrain
from services.runtime.pipeline import BatchProcessor, RetryPolicy
from services.runtime.positions import ConsumerPositions
from services.runtime.probes import ProbeServer, worker_routes
from services.runtime.query_server import serve_queries
from services.runtime.router import QueryStats
from services.runtime.settings import NatsTlsSettings, WorkerSettings
from services.runtime.spec import Assembly, ServiceSpec
from services.runtime.supervise import Supervisor
from services.runtime.telemetry import Stats
from services.runtime.tracing import Tracing
from services.runtime.tracing_events import EventSpans

log = logging.getLogger("engram.service")
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


def worker_broker(service: str, settings: WorkerSettings, supervisor: Supervisor) -> NatsBroker:
    """The worker's NATS connection: every server of NATS_URL, logged in as its own user."""
    nats = parse_servers(settings.nats_url)
    tls = NatsTlsSettings().context()
    login: NatsSecurity | None = (
        NatsUserPassword(nats.user, nats.password, ssl_context=tls)
        if nats.user and nats.password
        else (None if tls is None else NatsSecurity(ssl_context=tls))
    )
    return NatsBroker(
        nats.servers,
        # As options, not in the URLs: they apply to servers discovered from the cluster too.
        security=login,
        dont_randomize=not settings.nats_randomize,
        name=f"engram-{service}",
        max_reconnect_attempts=settings.nats_max_reconnect_attempts,
        graceful_timeout=settings.drain_timeout_s,
        # Closed for good (an -ERR from the server, reconnects given up): end the process.
        closed_cb=supervisor.connection_closed,
        # Its NATS user may read replies only under its own prefix (nats_auth.py).
        inbox_prefix=inbox_prefix(service),
        # Its access logger as configure_logging left it: FastStream's default one is set
        # back to INFO when the broker connects, so a worker run at WARNING built (and
        # wrote to stdout) two records per message it answered.
        logger=logging.getLogger(ACCESS_LOGGER),
    )


def worker_lifespan(
    spec: ServiceSpec, settings: WorkerSettings, worker: Worker
) -> Callable[[ContextRepo], AbstractAsyncContextManager[None]]:
    """The app's lifespan: the pool (in FastStream's context as ``pool``) and the metrics
    and probes port, which opens before the broker connects and closes last."""

    @asynccontextmanager
    async def lifespan(context: ContextRepo) -> AsyncIterator[None]:
        pool = await create_pool(
            settings.database_url,
            worker=True,
            min_size=settings.pool_min,
            max_size=settings.pool_max,
            vectors=settings.uses_vectors,
            # Each batch statement is planned for its own arrays and tenants. A cached
            # generic plan cannot see either (the tenant wall's setting, the batch's sizes),
            # and the one PostgreSQL settles on after five runs made ingest's insert 2.4x
            # slower (docs/benchmarks.md); planning once per batch costs well under 1 ms.
            # A startup setting, so the pool's RESET ALL keeps it.
            server_settings={"plan_cache_mode": "force_custom_plan"},
        )
        context.set_global("pool", pool)
        context.set_global("worker", worker)
        try:
            if settings.http_port is not None:
                # Before the broker connects: a worker that cannot reach NATS shows it.
                worker.probes = ProbeServer(
                    worker_routes(worker, pool, spec.store),
                    host=settings.http_host,
                    port=settings.http_port,
                )
                worker.http_port = await worker.probes.start()
            yield
        finally:
            if worker.probes is not None:
                await worker.probes.stop()
            await pool.close()
            # Last: the spans of the drain above are exported too. The export blocks.
            await asyncio.to_thread(worker.tracing.shutdown)

    return lifespan


def build_worker_app(
    spec: ServiceSpec, settings: WorkerSettings, tracing: Tracing | None = None
) -> tuple[FastStream, Worker]:
    """The worker's app; ``tracing`` None: as its settings say (off without an endpoint)."""
    service = spec.name
    assembly = spec.assembly(settings)
    worker = Worker(settings, assembly, spec.outbox)
    worker.tracing = tracing or Tracing.for_worker(service, settings)
    components: list[Component] = list(assembly.components)
    if assembly.publishes:
        drain = OutboxDrain(worker.outbox, poll_s=settings.outbox_poll_s, tracing=worker.tracing)
        components.insert(0, drain)
    # Last, so it stops first: once the consumers drained, it records where they stand.
    positions = ConsumerPositions(spec.schema)
    if assembly.consumes:
        components.append(positions)
    broker = worker_broker(service, settings, worker.supervisor)

    described = describe_consumers(service, assembly.consumes, assembly.publishes, assembly.asks)
    app = FastStream(
        broker,
        lifespan=worker_lifespan(spec, settings, worker),
        specification=AsyncAPI(
            described,
            title=f"engram {service}",
            version="1.0.0",
            description=spec.description,
        ),
    )
    queries = serve_queries(
        described,
        assembly.queries,
        queue=settings.queue_group,
        stats=worker.queries,
        tracing=worker.tracing,
        drain_timeout_s=settings.drain_timeout_s,
    )
    if queries is not None:  # after the pools it uses, ahead of the positions (stay last)
        components.insert(len(components) - (1 if assembly.consumes else 0), queries)

    worker.supervisor.stops(app.exit)

    @app.after_startup
    async def start_consumers(context: ContextRepo) -> None:
        nc = broker.connection
        worker.supervisor.nc = nc
        js = nc.jetstream()
        dead_letters = OnceDeadLetters(js, service, context.get("pool"), spec.schema)
        if missing := await bus_missing(js, assembly, dead_letters):
            worker.supervisor.fail(missing)  # one line, and a non-zero exit: no traceback
            return
        pool = context.get("pool")
        ctx = WorkerContext(settings, pool, nc, worker.outbox, worker.supervisor)
        for component in components:
            await component.start(ctx)
            worker.components.append(component)
        inbox = Inbox(spec.schema)
        policy = RetryPolicy(
            settings.max_deliver,
            settings.retry_base_s,
            settings.retry_max_s,
            keepalive_s=settings.ack_wait_s / 3,
            probe_max_s=settings.database_probe_max_s,
        )
        tracer = worker.tracing.tracer
        for item in assembly.consumes:
            processor: BatchProcessor[Any] = BatchProcessor(
                pool=pool,
                inbox=inbox,
                decode=item.decode,
                apply=item.apply,
                dead_letters=dead_letters,
                policy=policy,
                stats=worker.stats,
                spans=None if tracer is None else EventSpans(tracer, item.stream.name, service),
            )
            consumer = PullConsumer(
                worker.spec_for(item.stream, item.subjects),
                processor,
                batch_size=settings.batch_size,
                fetch_wait_s=settings.fetch_wait_s,
                drain_timeout_s=settings.drain_timeout_s,
                fetch_linger_s=settings.fetch_linger_s,
                commits_in_flight=settings.commits_in_flight,
                waits_for=item.waits_for,
            )
            await consumer.start(nc, dead_letters, worker.supervisor, positions)
            worker.consumers.append(consumer)
        log.info(
            "%s consuming %s",
            service,
            ", ".join(
                f"{c.spec.stream.name}{list(c.spec.filter_subjects)}" for c in worker.consumers
            ),
        )
        worker.started = True
        # Last, so the frozen heap holds everything start-up imported and built.
        tune_gc(freeze=settings.gc_freeze, young_threshold=settings.gc_young_threshold)

    @app.on_shutdown
    async def drain_consumers() -> None:
        worker.supervisor.stopping = True  # the connection closing from now on is expected
        await stop_all(worker.consumers, service)
        worker.consumers.clear()
        for component in reversed(worker.components):
            try:
                await component.stop()
            except Exception as exc:  # the others still stop
                log.error("%s: stopping %s failed: %s", service, component.name, describe(exc))
        worker.components.clear()

    return app, worker


async def bus_missing(
    js: JetStreamContext, assembly: Assembly, dead_letters: OnceDeadLetters
) -> str | None:
    """What of the bus the worker needs does not exist, in words; None when all does."""
    try:
        await require_streams(js, streams_of(assembly))
        if assembly.consumes:
            await dead_letters.body_store()
    except BusNotReady as exc:
        return str(exc)
    return None


def streams_of(assembly: Assembly) -> list[Stream]:
    """The streams a worker reads, publishes to and dead-letters into."""
    streams = [item.stream for item in assembly.consumes]
    streams += [stream_of(event.model_fields["type"].default) for event in assembly.publishes]
    if assembly.consumes:
        streams.append(DLQ)
    return list(dict.fromkeys(streams))


def create_worker(spec: ServiceSpec, **overrides: Any) -> tuple[FastStream, Worker]:
    """The service's app and worker state; ``overrides`` win over the environment."""
    return build_worker_app(spec, spec.settings(**overrides))
