"""``EngramClient``: publish events to JetStream and ask engram's queries over core NATS.

It knows the bus only through ``contracts``: an event's subject is its ``type``, its
``Nats-Msg-Id`` is ``Envelope.msg_id``, and a query's subject, request and reply models are
those of ``contracts.registry.QUERIES``. Nothing here knows how a service works inside.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from pydantic import BaseModel

from contracts.envelope import Envelope
from contracts.registry import QUERIES
from engram_client.asking import ask
from engram_client.connect import open_connection
from engram_client.errors import (
    BadReply,
    EngramError,
    PublishFailed,
)
from engram_client.events import EventBuilder
from engram_client.options import Connection, Retry
from engram_client.queries import QueryMethods
from engram_client.queries_read import ReadMethods

R = TypeVar("R", bound=BaseModel)
SUBJECT_OF: dict[type[BaseModel], str] = {request: s for s, (request, _) in QUERIES.items()}


class Published(NamedTuple):
    """JetStream's acknowledgement of one event."""

    stream: str  # the stream that stored it
    seq: int  # its sequence number there
    duplicate: bool  # True: a copy with this Nats-Msg-Id was already stored (not stored twice)


class BatchPublishFailed(PublishFailed):
    """Some events of a ``publish_many`` were not stored. ``results[i]`` is the ack of
    event ``i`` or None; ``errors[i]`` why event ``i`` failed. Publish the batch again:
    the stored ones are dropped as duplicates."""

    def __init__(self, results: list[Published | None], errors: dict[int, Exception]) -> None:
        first = min(errors)
        super().__init__("(batch)", f"#{first}", f"{len(errors)} failed; first: {errors[first]}")
        self.results = results
        self.errors = errors


class EngramClient(QueryMethods, ReadMethods):
    """Async client of engram's bus. ``async with await EngramClient.connect(...)``, or
    ``EngramClient(nc)`` over a connection the caller owns (then ``close`` leaves it open).

    ``tenant_id`` and ``producer`` fill the envelopes its ``events`` builder makes and are
    the default tenant of its queries."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        tenant_id: str | None = None,
        producer: str = "engram-client",
        retry: Retry | None = None,
        owns_connection: bool = False,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.tenant_id = tenant_id
        self.retry = retry or Retry()
        self.events = EventBuilder(tenant_id=tenant_id, producer=producer)
        self._owns = owns_connection

    @classmethod
    async def connect(
        cls,
        servers: str | tuple[str, ...] | Connection = "nats://127.0.0.1:4222",
        *,
        tenant_id: str | None = None,
        producer: str = "engram-client",
        retry: Retry | None = None,
        **connection: Any,
    ) -> EngramClient:
        """Connect to NATS. ``servers`` is a URL (credentials may be in it), a tuple of
        URLs, or a full ``Connection``; other ``Connection`` fields by keyword (``user``,
        ``password``, ``token``, ``tls``, ``inbox_prefix``, ...)."""
        options = servers if isinstance(servers, Connection) else Connection(servers, **connection)
        nc = await open_connection(options)
        return cls(nc, tenant_id=tenant_id, producer=producer, retry=retry, owns_connection=True)

    async def close(self) -> None:
        """Flush what was published and close the connection (if the client opened it)."""
        if self._owns and not self.nc.is_closed:
            await self.nc.drain()

    async def __aenter__(self) -> EngramClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- events --------------------------------------------------------------------------

    async def publish(self, event: Envelope, *, retry: Retry | None = None) -> Published:
        """Publish one event on its subject (= its ``type``) and wait until JetStream has
        stored it. Retries a missing ack (bounded); raises ``PublishFailed``."""
        policy = retry or self.retry
        body = event.model_dump_json(by_alias=True).encode()
        delays = policy.delays()
        why = ""
        for attempt in range(policy.attempts):
            try:
                ack = await self.js.publish(
                    event.type, body, timeout=policy.timeout_s, headers=event.headers()
                )
                return Published(ack.stream, ack.seq, bool(ack.duplicate))
            except (nats.errors.TimeoutError, nats.js.errors.NoStreamResponseError) as exc:
                # No ack: JetStream busy or restarting (or no stream takes the subject).
                why = f"{type(exc).__name__} on attempt {attempt + 1}"
            except nats.js.errors.APIError as exc:
                raise PublishFailed(event.type, str(event.event_id), str(exc)) from exc
            except nats.errors.Error as exc:
                raise PublishFailed(event.type, str(event.event_id), repr(exc)) from exc
            delay = next(delays, None)
            if delay is None:
                break
            await asyncio.sleep(delay)
        raise PublishFailed(event.type, str(event.event_id), f"no ack: {why}")

    async def publish_many(
        self, events: Iterable[Envelope], *, max_in_flight: int = 64, retry: Retry | None = None
    ) -> list[Published]:
        """Publish many events (a bulk load) with at most ``max_in_flight`` acks awaited at
        once; returns their acks in order. Raises ``BatchPublishFailed`` after every event
        was tried if any was not stored."""
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        results: list[Published | None] = []
        errors: dict[int, Exception] = {}
        # A semaphore, not asyncio.wait over the pending set: waiting on N tasks costs O(N)
        # per event, and a bulk load publishes many.
        window = asyncio.Semaphore(max_in_flight)
        tasks: set[asyncio.Task[None]] = set()

        async def one(index: int, event: Envelope) -> None:
            try:
                results[index] = await self.publish(event, retry=retry)
            except EngramError as exc:
                errors[index] = exc
            finally:
                window.release()

        try:
            for index, event in enumerate(events):
                results.append(None)
                await window.acquire()
                task = asyncio.create_task(one(index, event))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            for _ in range(max_in_flight):  # every slot back: every event answered
                await window.acquire()
        except BaseException:  # cancelled (or the iterable failed): stop what is in flight
            for task in tasks:
                task.cancel()
            raise
        if errors:
            raise BatchPublishFailed(results, errors)
        return [r for r in results if r is not None]

    # --- queries -------------------------------------------------------------------------

    async def query(
        self, request: BaseModel, *, subject: str | None = None, retry: Retry | None = None
    ) -> BaseModel:
        """Ask any query of ``contracts.registry.QUERIES`` (its subject found from the
        request's type) and return its result model; a ``QueryError`` reply raises its
        ``QueryRejected`` subclass."""
        subject = subject or SUBJECT_OF.get(type(request))
        if subject is None or subject not in QUERIES:
            raise ValueError(f"no query takes a {type(request).__name__}")
        return await self._ask(subject, request, BaseModel, retry)

    async def _ask(
        self, subject: str, request: BaseModel, reply: type[R], retry: Retry | None = None
    ) -> R:
        request_model, answer_model = QUERIES[subject]
        if not isinstance(request, request_model):
            raise TypeError(f"{subject} takes a {request_model.__name__}")
        body = request.model_dump_json(by_alias=True).encode()
        answer = await ask(self.nc, subject, body, answer_model, retry or self.retry)
        if not isinstance(answer, reply):
            raise BadReply(f"{subject}: got {type(answer).__name__}")
        return answer
