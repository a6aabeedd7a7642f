"""The pull loop of one durable consumer: natural batching and a draining stop.

A fetch returns as soon as anything is available (up to ``batch_size``), so one event
alone is processed at once, while under load the messages that arrive during one
transaction make up the next batch. An idle loop keeps one pull request lingering for
``fetch_wait_s``, not a busy poll. The fetch itself is ours (``fetch.py``): nats-py's
awaits each message of a batch separately.

A failing fetch is logged once and shown in the health until a fetch works again. When
the failure is the consumer itself gone (deleted under the worker), it is created again
from its last ack floor (``durable.py``) rather than from the start of the stream.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo

from services.runtime.bus import ConsumerSpec
from services.runtime.component import Health
from services.runtime.dlq import DeadLetters, watch_max_deliveries
from services.runtime.durable import Durable, may_mean_missing
from services.runtime.errors import describe
from services.runtime.fetch import Fetcher
from services.runtime.pipeline import BatchProcessor, Prepared
from services.runtime.positions import ConsumerPositions
from services.runtime.supervise import Supervisor

log = logging.getLogger("engram.consumer")

E = TypeVar("E")
# (events of a batch still committing, events of the next) -> must the next one wait?
WaitsFor = Callable[[Sequence[E], Sequence[E]], bool]


class PullConsumer:
    def __init__(
        self,
        spec: ConsumerSpec,
        processor: BatchProcessor[Any],
        *,
        batch_size: int,
        fetch_wait_s: float,
        drain_timeout_s: float,
        fetch_linger_s: float = 0.0,
        commits_in_flight: int = 1,
        waits_for: WaitsFor[Any] | None = None,
    ) -> None:
        self.spec = spec
        self.processor = processor
        self._batch_size = batch_size
        self._fetch_wait_s = fetch_wait_s
        self._fetch_linger_s = fetch_linger_s
        self._commits_in_flight = commits_in_flight
        self._waits_for = waits_for
        self.peak_in_flight = 0  # most batches seen committing at once, for diagnosis
        self._drain_timeout_s = drain_timeout_s
        self._sub: JetStreamContext.PullSubscription | None = None
        self._fetcher: Fetcher | None = None
        self._durable: Durable | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failures = 0  # fetches failed in a row
        self._failing_since = 0.0
        self._last_error = ""
        self._advisories: Any = None

    async def start(
        self,
        nc: NatsClient,
        dead_letters: DeadLetters,
        supervisor: Supervisor | None = None,
        positions: ConsumerPositions | None = None,
    ) -> None:
        """Bind and start pulling. With a supervisor, a loop that ends before ``stop``
        (a bug, a cancellation) fails the worker rather than leaving it idle. With
        ``positions``, the consumer's position is recorded, and a consumer found missing
        is created again from there (without them, from the start of the stream)."""
        js = nc.jetstream()
        self._durable = Durable(js, self.spec, positions)
        await self._durable.ensure()
        if positions is not None:
            positions.track(self.spec)
        self._sub = await js.pull_subscribe_bind(
            durable=self.spec.durable, stream=self.spec.stream.name
        )
        self._fetcher = Fetcher(self._sub)
        self._advisories = await watch_max_deliveries(nc, self.spec, dead_letters)
        name = f"consume:{self.spec.stream.name}:{self.spec.durable}"
        self._task = asyncio.create_task(self._run(), name=name)
        if supervisor is not None:
            supervisor.watch(self._task, f"the pull loop {name}", lambda: self._stopping)

    async def _run(self) -> None:
        # Two stages: while batch N's transaction is in flight (the database works), batch
        # N+1 is fetched and decoded (Python works). With one commit in flight (the
        # default) transactions run one at a time, in stream order; a service whose
        # batches commute may allow more, so that one batch's statements run while the
        # previous one waits for its commit to be flushed and acks its messages.
        # Stopping ends the loop only once the open pull request is over and nothing it
        # brought in is left queued; those messages are committed like any other.
        assert self._fetcher is not None
        in_flight: collections.deque[tuple[asyncio.Task[None], Prepared[Any]]] = collections.deque()
        try:
            while not (self._stopping and self._fetcher.idle):
                msgs = await self._next_batch()
                if not msgs:
                    continue
                batch = await self.processor.prepare(msgs)
                while in_flight and in_flight[0][0].done():  # committed already
                    await in_flight.popleft()[0]
                while in_flight and (
                    len(in_flight) >= self._commits_in_flight
                    or self._must_wait(batch, [earlier for _, earlier in in_flight])
                ):
                    await in_flight.popleft()[0]
                in_flight.append((asyncio.create_task(self._commit(batch)), batch))
                self.peak_in_flight = max(self.peak_in_flight, len(in_flight))
        finally:
            for task, _ in in_flight:
                await task

    def _must_wait(self, batch: Prepared[Any], committing: list[Prepared[Any]]) -> bool:
        if self._waits_for is None:
            return False
        events = [item.event for item in batch.items]
        return any(
            self._waits_for([item.event for item in earlier.items], events)
            for earlier in committing
        )

    async def _next_batch(self) -> list[Msg]:
        assert self._fetcher is not None
        try:
            msgs = await self._fetcher.fetch(
                self._batch_size,
                self._fetch_wait_s,
                request=not self._stopping,
                linger_s=self._fetch_linger_s,
            )
        except Exception as exc:  # connection trouble or a 409: back off, nats-py reconnects
            await self._fetch_failed(exc)
            return []
        if self._failures:
            log.info(
                "fetch works again on %s after %d failures", self.spec.stream.name, self._failures
            )
            self._failures = 0
        return msgs

    async def _fetch_failed(self, exc: Exception) -> None:
        durable = self._durable
        assert durable is not None
        if not self._stopping and may_mean_missing(exc) and await durable.is_missing():
            if await durable.recover():
                self._failures = 0
                return  # pull again at once, from the consumer created again
        elif self._failures == 0:  # logged once; the health shows how long it lasts
            log.warning("fetch failed on %s: %s", self.spec.stream.name, describe(exc))
        if self._failures == 0:
            self._failing_since = time.time()
        self._failures += 1
        self._last_error = describe(exc)
        await asyncio.sleep(min(0.2 * 2**self._failures, 5.0))

    @property
    def alive(self) -> bool:
        """Its pull loop runs (or ended only because it was asked to stop)."""
        return self._task is not None and (not self._task.done() or self._stopping)

    async def info(self) -> ConsumerInfo:
        """The server's account of this durable consumer (its lag)."""
        if self._durable is None:
            raise RuntimeError(f"consumer {self.spec.durable} is not started")
        return await self._durable.info()

    def health(self) -> Health:
        name = f"consume:{self.spec.stream.name}:{self.spec.durable}"
        durable = self._durable
        if durable is not None and durable.missing_since is not None:
            detail = f"consumer missing for {time.time() - durable.missing_since:.0f}s"
            why = f"cannot create it again yet: {durable.problem}" if durable.problem else ""
            return Health(name, False, f"{detail}, pulling nothing; {why or 'creating it again'}")
        if self._failures:
            return Health(
                name,
                False,
                f"fetch failing ({self._failures}x) for "
                f"{time.time() - self._failing_since:.0f}s: {self._last_error}",
            )
        if durable is not None and durable.recreated:
            return Health(
                name,
                True,
                f"pulling; consumer created again {durable.recreated}x (it was missing), "
                f"last from stream sequence {durable.last_start_seq or 1}",
            )
        return Health(name, True, "pulling")

    async def _commit(self, batch: Prepared[Any]) -> None:
        try:
            await self.processor.commit(batch)
        except Exception:  # a bug must not kill the worker; the messages come back
            log.exception("batch failed on %s; returning it", self.spec.stream.name)
            for msg in batch.msgs:
                with contextlib.suppress(Exception):
                    await msg.nak(delay=5.0)

    async def stop(self) -> None:
        """Stop pulling and drain: the pull request still open is allowed to finish (at
        most ``fetch_wait_s`` after it was sent) rather than cancelled, because messages it
        already brought in would otherwise wait out the ack wait; what it brings, and what
        is still queued from it, is committed and acked, as is the batch in flight. No new
        pull request is sent once stopping."""
        self._stopping = True
        if self._task is not None and not self._task.done():  # one that ended was reported
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self._drain_timeout_s)
            except TimeoutError:
                log.error(
                    "drain timed out on %s; unacked messages will be redelivered",
                    self.spec.stream.name,
                )
                self._task.cancel()
            except Exception:  # the loop had crashed: reported when it did; still unbind
                log.debug("pull loop on %s had failed", self.spec.stream.name)
        for sub in (self._sub, self._advisories):
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()


async def stop_all(consumers: list[PullConsumer], service: str) -> None:
    """Drain every consumer at once: each waits for its open pull request and its batch in
    flight, at most ``drain_timeout_s``, so the stop takes the slowest one's time, not the
    sum (audit reads four streams). One that fails does not keep the others from draining."""
    outcomes = await asyncio.gather(*(c.stop() for c in consumers), return_exceptions=True)
    for consumer, outcome in zip(consumers, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            log.error(
                "%s: draining %s failed: %s", service, consumer.spec.stream.name, describe(outcome)
            )
