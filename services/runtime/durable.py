"""A worker's durable consumer on the server: created, kept, and re-created when missing.

A consumer can disappear under a running worker (deleted by hand or by a tool, lost with a
server's storage). Its pull requests then fail (``409 Consumer Deleted`` for the open
one, ``503`` no responders for every one after), which would otherwise be logged once per
fetch, forever, with the worker idle. ``Durable`` confirms the consumer is gone, says so
once at error and in the worker's health, and creates it again delivering from the
sequence after its last known ack floor (``positions.py``), never from the start of the
stream: that would replay a week of history and dead-letter every invalid message in it
again. The same happens when a worker starts and finds its consumer missing.

A position that cannot be read (the database is down) is not taken for "none": the
consumer stays missing and is tried again, rather than re-created from the beginning.
Only a service with no position recorded (a fresh database) starts from the beginning,
as a first start does.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import datetime
from typing import Protocol

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.errors import NotFoundError

from services.runtime.bus import ConsumerSpec
from services.runtime.errors import describe
from services.runtime.fetch import PullStatusError

log = logging.getLogger("engram.durable")

CONSUMER_NOT_FOUND = 10014  # JetStream's error code; 10059 is a missing stream


class PositionSource(Protocol):
    async def last_acked(self, spec: ConsumerSpec, stream_created: datetime) -> int | None: ...


def with_start(config: ConsumerConfig, start_seq: int | None) -> ConsumerConfig:
    """``config`` delivering from ``start_seq`` (None: the whole stream)."""
    if start_seq is None:
        return dataclasses.replace(config, deliver_policy=DeliverPolicy.ALL, opt_start_seq=None)
    return dataclasses.replace(
        config, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq
    )


def may_mean_missing(exc: BaseException) -> bool:
    """A fetch failure after which the consumer may be gone (confirmed by asking)."""
    return isinstance(exc, PullStatusError | NotFoundError)


class Durable:
    def __init__(
        self, js: JetStreamContext, spec: ConsumerSpec, positions: PositionSource | None
    ) -> None:
        self._js = js
        self.spec = spec
        self._positions = positions
        self.missing_since: float | None = None  # time.time() it was found missing
        self.problem = ""  # why it is not re-created yet
        self.recreated = 0  # times this worker found it missing and created it again
        self.last_start_seq: int | None = None  # where the last re-creation delivers from

    @property
    def _where(self) -> str:
        return f"consumer {self.spec.durable} on {self.spec.stream.name}"

    async def ensure(self) -> None:
        """At start: update the consumer to its declared settings, keeping where it
        delivers from (JetStream refuses to change that, and it may have been created
        again from a position); create it when missing. Raises when it cannot, so that
        the worker does not start without it."""
        stream, durable = self.spec.stream.name, self.spec.durable
        try:
            info = await self._js.consumer_info(stream, durable)
        except NotFoundError as exc:
            if exc.err_code != CONSUMER_NOT_FOUND:
                raise
        else:
            current = info.config
            config = dataclasses.replace(
                self.spec.config(),
                deliver_policy=current.deliver_policy,
                opt_start_seq=current.opt_start_seq,
                opt_start_time=current.opt_start_time,
            )
            await self._js.add_consumer(stream, config)
            return
        created = await self._stream_created()
        floor = await self._floor(created)
        if floor is None:  # a first start (or a database with no position yet)
            await self._js.add_consumer(stream, with_start(self.spec.config(), None))
            return
        self.missing_since = time.time()
        log.error("%s is missing at start; creating it again from the last ack floor", self._where)
        await self._create(floor)

    async def info(self) -> ConsumerInfo:
        """The server's account of the consumer (pending, ack pending, redelivered)."""
        info: ConsumerInfo = await self._js.consumer_info(self.spec.stream.name, self.spec.durable)
        return info

    async def is_missing(self) -> bool:
        """Ask the server; False also when it cannot say (then it is a fetch failure)."""
        try:
            await self._js.consumer_info(self.spec.stream.name, self.spec.durable)
        except NotFoundError:
            return True
        except Exception:
            return False
        return False

    async def recover(self) -> bool:
        """The consumer was found missing: create it again from its last ack floor.
        True once it exists again; False while it cannot be (logged once, in health)."""
        if self.missing_since is None:
            self.missing_since = time.time()
            log.error(
                "%s is missing (deleted?): pulling nothing; creating it again from the "
                "last ack floor",
                self._where,
            )
        try:
            created = await self._stream_created()
            floor = await self._floor(created)
            await self._create(floor)
        except Exception as exc:
            problem = describe(exc)
            if problem != self.problem:  # once per reason, not once per attempt
                log.error("%s cannot be created again yet: %s", self._where, problem)
            self.problem = problem
            return False
        return True

    async def _stream_created(self) -> datetime:
        info = await self._js.stream_info(self.spec.stream.name)
        if info.created is None:  # every server since 2.2 sends it
            raise RuntimeError(f"stream {self.spec.stream.name} has no creation time")
        return info.created

    async def _floor(self, created: datetime) -> int | None:
        if self._positions is None:
            return None
        try:
            return await self._positions.last_acked(self.spec, created)
        except Exception as exc:
            raise RuntimeError(f"its last position cannot be read: {describe(exc)}") from exc

    async def _create(self, floor: int | None) -> None:
        start = None if floor is None else floor + 1
        config = with_start(self.spec.config(), start)
        try:
            await self._js.add_consumer(self.spec.stream.name, config)
        except Exception:
            # Another replica may have created it first (from a position a moment older
            # or newer: JetStream then refuses ours). It exists: that is what counts.
            if not await self._exists():
                raise
        self._created(start)

    async def _exists(self) -> bool:
        try:
            await self._js.consumer_info(self.spec.stream.name, self.spec.durable)
        except Exception:
            return False
        return True

    def _created(self, start: int | None) -> None:
        down_s = time.time() - (self.missing_since or time.time())
        self.recreated += 1
        self.last_start_seq = start
        self.missing_since, self.problem = None, ""
        log.warning(
            "%s created again after %.1fs, delivering from %s",
            self._where,
            down_s,
            "the start of the stream (no position recorded)"
            if start is None
            else f"stream sequence {start}",
        )
