"""Builds a worker's FastStream app from its service's spec; the same for every service.

The pool is made in the lifespan and injected through FastStream's context (``pool``).
Once the broker is connected: the streams it reads and writes must exist (the bus setup,
an admin's step, creates them; a worker that finds one missing says so and exits, so that
its supervisor restarts it), the components start (in their
order; the outbox drain first when the service publishes), then the consumers. At
shutdown the consumers drain first, all at once, then the components stop in reverse order, so the
drain publishes what the last batches committed.

The worker's state is a ``Worker`` (``worker.py``); its NATS broker and the lifespan that
holds its pool and its metrics and probes port are ``worker_connections.py``'s.

With an OTLP endpoint configured (``tracing.py``), the worker traces its batches, events,
queries and outbox publishes; what is left of its spans is exported when it stops.
"""

from __future__ import annotations

import logging
from typing import Any

from faststream import ContextRepo, FastStream
from faststream.specification import AsyncAPI
from nats.js import JetStreamContext

from services.runtime.bus import DLQ, BusNotReady, Stream, require_streams, stream_of
from services.runtime.component import Component, WorkerContext
from services.runtime.consumer import PullConsumer, stop_all
from services.runtime.dlq_once import OnceDeadLetters
from services.runtime.docs import describe_consumers
from services.runtime.errors import describe
from services.runtime.gctune import tune_gc
from services.runtime.inbox import Inbox
from services.runtime.outbox import OutboxDrain
from services.runtime.pipeline import BatchProcessor, RetryPolicy
from services.runtime.positions import ConsumerPositions
from services.runtime.query_server import serve_queries
from services.runtime.settings import WorkerSettings
from services.runtime.spec import Assembly, ServiceSpec
from services.runtime.tracing import Tracing
from services.runtime.tracing_events import EventSpans
from services.runtime.worker import Worker
from services.runtime.worker_connections import worker_broker, worker_lifespan

log = logging.getLogger("engram.service")


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
