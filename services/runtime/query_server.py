"""The worker's query server: every ``QueryRoute`` answered on the worker's NATS connection.

A request is a subscription callback: the request validated from its JSON, the route's
handler, the reply published, with the one error model (``replies.query_failure``),
``too_large`` for a reply over the connection's ``max_payload``, ``QueryStats``, a span
per request when the worker traces (none for a request its requester did not sample:
the reply then names the requester's span), and ``max_workers`` requests of a route at
once (the callback waits for a free slot; what arrives meanwhile waits in the
subscription's queue, nats-py's default limits). Replicas share each subject in the
worker's queue group. The component starts after the pools and models its routes read
(a starting worker is not yet in the queue group: a client gets "no responders", or
another replica's answer) and stops before them, answering what it has received.

Why not FastStream's subscribers: its per-message machinery (middleware stack,
dependency injection, memory streams between its workers, two access-log records) cost
more CPU than many queries' own work: ~1.5 ms of a LangGraph put's 2.5 ms in the worker,
and ~1 ms per hop of each of the six a context build makes (docs/architecture.md, "One
query transport"). The AsyncAPI document still shows every route: ``describe_routes``
declares them on the never-started documentation broker (``service.create_worker``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from faststream.nats import NatsBroker
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import ValidationError

from contracts.errors import QueryError
from services.runtime.component import Health, WorkerContext
from services.runtime.replies import fit, query_failure, refused_request, reply_limit
from services.runtime.router import (
    SERVER_FAULTS,
    QueryRoute,
    QueryStats,
    describe_routes,
    query_attributes,
)
from services.runtime.trace_context import trace_of, unsampled
from services.runtime.tracing import Tracing, headers_of, parent_of

log = logging.getLogger(__name__)


class QueryServer:
    """The component answering the worker's query routes (see the module docstring)."""

    name = "queries"

    def __init__(
        self,
        routes: Sequence[QueryRoute],
        *,
        queue: str,
        stats: QueryStats,
        tracing: Tracing,
        drain_timeout_s: float = 10.0,
    ) -> None:
        self.routes, self.queue, self.stats, self.tracing = list(routes), queue, stats, tracing
        self.drain_timeout_s = drain_timeout_s
        self._nc: NatsClient | None = None
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, ctx: WorkerContext) -> None:
        self._nc = ctx.nc
        try:
            for route in self.routes:
                self._subs.append(await self._subscribe(ctx.nc, route))
        except BaseException:  # not started: nothing of it stays subscribed
            await self._unsubscribe(self._subs)
            self._subs = []
            raise

    async def _subscribe(self, nc: NatsClient, route: QueryRoute) -> Subscription:
        slots = asyncio.Semaphore(route.max_workers)

        async def take(msg: Msg) -> None:
            await slots.acquire()  # in the callback: the next message waits for a slot
            task = asyncio.create_task(self._answer(route, msg, slots))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return await nc.subscribe(route.subject, queue=self.queue, cb=take)

    async def stop(self) -> None:
        """No more requests; those already received (queued behind a busy route, or being
        answered) are answered within the drain timeout, the rest cancelled."""
        subs, self._subs = self._subs, []
        try:
            async with asyncio.timeout(self.drain_timeout_s):
                if self._nc is None or not self._nc.is_connected:
                    # no round trip to wait for: nothing more can arrive, nor be answered
                    await self._unsubscribe(subs)
                else:
                    for sub in subs:
                        with contextlib.suppress(Exception):  # the connection may go
                            # unsubscribes, then hands out what is queued
                            await sub.drain()  # type: ignore[no-untyped-call]
                if self._tasks:
                    await asyncio.wait(set(self._tasks))
        except TimeoutError:
            log.warning(
                "queries: %d requests unanswered after %.1f s of draining",
                len(self._tasks),
                self.drain_timeout_s,
            )
            await self._unsubscribe(subs)
            for task in set(self._tasks):
                task.cancel()

    @staticmethod
    async def _unsubscribe(subs: list[Subscription]) -> None:
        for sub in subs:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await sub.unsubscribe()

    def health(self) -> Health:
        if not self._subs:
            return Health(self.name, False, "not subscribed")
        return Health(self.name, True, f"{len(self._subs)} subjects, {len(self._tasks)} in hand")

    async def _answer(self, route: QueryRoute, msg: Msg, slots: asyncio.Semaphore) -> None:
        try:
            tracer = self.tracing.tracer
            if tracer is None:
                data, _, _ = await self._reply(route, msg.data)
                await self._publish(msg, data, None)
                return
            if unsampled(msg.headers):  # no span would be recorded: its requester's trace
                data, _, _ = await self._reply(route, msg.data)
                await self._publish(msg, data, trace_of(msg.headers))
                return
            with tracer.start_as_current_span(
                f"query {route.subject}", context=parent_of(msg.headers), kind=SpanKind.SERVER
            ) as span:
                if span.is_recording():
                    span.set_attributes(query_attributes(route.subject))
                data, error, tenant = await self._reply(route, msg.data)
                span.set_attribute("engram.outcome", "ok" if error is None else "error")
                if tenant is not None:
                    span.set_attribute("engram.tenant_id", tenant)
                if error is not None:
                    span.set_attribute("engram.error_code", error.code.value)
                    if error.code in SERVER_FAULTS:
                        span.set_status(Status(StatusCode.ERROR, error.message))
                await self._publish(msg, data, headers_of(span))
        except Exception:  # the reply could not be sent: the client's retry asks again
            log.warning("%s: no reply sent", route.subject, exc_info=True)
        finally:
            slots.release()

    async def _reply(
        self, route: QueryRoute, body: bytes
    ) -> tuple[bytes, QueryError | None, str | None]:
        """The reply's bytes, the error it is (None: a result), the request's tenant."""
        limit, subject = reply_limit(self._nc), route.subject
        try:
            request = route.request.model_validate_json(body)
        except ValidationError as exc:  # it breaks the contract: counted, not timed
            refused = refused_request(exc)
            self.stats.record(subject, None, refused)
            return fit(refused, limit, subject, route.hint), refused, None
        started = time.perf_counter()
        error: QueryError | None = None
        try:
            reply = await route.handle(request, limit)
        except Exception as exc:
            reply = error = query_failure(exc, subject, route.unavailable)
        self.stats.record(subject, time.perf_counter() - started, error)
        tenant = getattr(request, "tenant_id", None)
        data = fit(reply, limit, subject, route.hint)
        return data, error, None if tenant is None else str(tenant)

    async def _publish(self, msg: Msg, data: bytes, headers: dict[str, str] | None) -> None:
        if msg.reply and self._nc is not None:
            await self._nc.publish(msg.reply, data, headers=headers)


def serve_queries(
    described: NatsBroker,
    routes: Sequence[QueryRoute],
    *,
    queue: str,
    stats: QueryStats,
    tracing: Tracing,
    drain_timeout_s: float,
) -> QueryServer | None:
    """The component answering ``routes`` (None when there are none), which are declared
    on ``described``, the documentation broker, too."""
    if not routes:
        return None
    describe_routes(described, routes, queue=queue)
    return QueryServer(
        routes, queue=queue, stats=stats, tracing=tracing, drain_timeout_s=drain_timeout_s
    )
