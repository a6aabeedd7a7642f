"""A cheaper JetStream pull fetch for the consumer loop.

nats-py's ``PullSubscription.fetch`` awaits every message of a batch through
``next_msg``, a new task, an ``asyncio.wait_for`` and a ``uuid4`` each (about a tenth of a
busy worker's CPU), and sends two pull requests per call when it finds nothing queued.
``Fetcher`` keeps at most one pull request open per subscription and waits only for the
first message; everything that has already arrived is then taken from the
subscription's queue without awaiting anything.

A request asks for up to ``batch`` messages and expires on the server after about
``wait_s``; the call returns as soon as it holds one message or more (natural batching).
The request stays open after that, so messages it brings in later sit in the queue and
belong to the next call, which takes them before it asks for more. A new request is sent
only when the open one is over: all its messages delivered, a status message ended it
(408 expired, 404 nothing there, 409 conflicts), or its expiry passed without an answer
(a reconnect can lose it). If that last guess is wrong, two requests are briefly open;
both deliver into the same queue, so nothing is lost, only a little more is prefetched.
When a call's messages used up the open request and nothing else is queued, the next
request goes out before returning them, so under a backlog the next batch arrives while
this one is processed: a consumer holds at most three batches unacked (one committing, one
decoded and waiting for it, one arriving).

This reads private attributes of nats-py's PullSubscription (``_nc``, ``_sub``, ``_nms``,
``_deliver``) and Subscription (``_pending_queue``, ``_pending_size``), as its own fetch
does; tests/connected/test_fetch.py exercises them against a real server, so an upgrade
that moves them fails there first.
"""

from __future__ import annotations

import asyncio
import logging
import time

from nats.aio.msg import Msg
from nats.js import JetStreamContext

log = logging.getLogger("engram.fetch")

# The server's own expiry comes this much before ours, so its 408 normally ends the
# request before we give up on it; a 408 arriving after that is harmless (see above).
EXPIRY_MARGIN_S = 0.05
# Status codes that end a pull request normally: nothing to return, ask again.
_QUIET_END = frozenset({"404", "408"})
_HEARTBEAT = "100"


class PullStatusError(Exception):
    """The server ended a pull request with a status other than expiry or no messages
    (409 Exceeded MaxWaiting, Leadership Change, Consumer Deleted, 400, 503...)."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code} {description}".strip())
        self.code = code
        self.description = description


class Fetcher:
    """Pull requests for one bound pull subscription, at most one open at a time."""

    def __init__(self, psub: JetStreamContext.PullSubscription) -> None:
        self._nc = psub._nc
        self._sub = psub._sub
        self._queue: asyncio.Queue[Msg] = psub._sub._pending_queue
        self._subject: str = psub._nms
        self._inbox: str = psub._deliver
        self._left = 0  # messages the open request may still deliver
        self._deadline = 0.0  # monotonic time after which it is over, answered or not
        self._error: PullStatusError | None = None
        self.requests = 0  # pull requests sent, for tests and diagnosis

    @property
    def open(self) -> bool:
        """A pull request is still open: more messages may arrive without asking."""
        return self._left > 0 and time.monotonic() < self._deadline

    @property
    def idle(self) -> bool:
        """Nothing open and nothing queued: stopping now strands no message."""
        return not self.open and self._queue.empty()

    async def fetch(
        self, batch: int, wait_s: float, *, request: bool = True, linger_s: float = 0.0
    ) -> list[Msg]:
        """Up to ``batch`` messages, as soon as there is one (then up to ``linger_s`` more
        for the batch to fill), or [] once the open request is over. With
        ``request=False`` (draining) no new request is sent: only what is queued and what
        the open request still brings in is returned."""
        msgs: list[Msg] = []
        self._take(msgs, batch)
        if not msgs and self._error is None and (request or self.open):
            if not self.open:
                await self._request(batch, wait_s)
            await self._wait(msgs, batch, 1, self._deadline)
        if msgs and linger_s > 0:
            await self._wait(msgs, batch, batch, min(time.monotonic() + linger_s, self._deadline))
        if msgs and request and self._error is None and not self.open and self._queue.empty():
            await self._prefetch(batch, wait_s)
        error, self._error = self._error, None
        if error is not None:
            if not msgs:
                raise error
            log.warning("pull request on %s ended with %s", self._subject, error)
        return msgs

    async def _prefetch(self, batch: int, wait_s: float) -> None:
        # These messages used up the open request: ask for the next batch now, so that it
        # arrives while they are processed. Without this, under a backlog every other
        # batch would be only what one socket read brought in before we returned.
        try:
            await self._request(batch, wait_s)
        except Exception as exc:  # the messages taken must be returned; the next call retries
            log.debug("prefetch on %s failed: %s", self._subject, exc)

    async def _request(self, batch: int, wait_s: float) -> None:
        expires_s = max(wait_s - EXPIRY_MARGIN_S, wait_s / 2)
        body = b'{"batch":%d,"expires":%d}' % (batch, int(expires_s * 1e9))
        await self._nc.publish(self._subject, body, reply=self._inbox)
        self.requests += 1
        self._left = batch
        self._deadline = time.monotonic() + wait_s

    async def _wait(self, msgs: list[Msg], batch: int, want: int, until: float) -> None:
        # Until ``want`` messages or ``until``; whatever arrived with the last one awaited is
        # taken as well, up to ``batch``.
        while len(msgs) < want and self._error is None and self.open:
            try:
                async with asyncio.timeout(until - time.monotonic()):
                    item = await self._queue.get()
            except TimeoutError:
                if until >= self._deadline:
                    self._left = 0  # never answered: the next call asks again
                return
            self._accept(item, msgs)
            self._take(msgs, batch)

    def _take(self, msgs: list[Msg], batch: int) -> None:
        queue = self._queue
        while len(msgs) < batch and not queue.empty():
            self._accept(queue.get_nowait(), msgs)

    def _accept(self, msg: Msg, msgs: list[Msg]) -> None:
        # What nats-py's next_msg would do for a message leaving the queue: the byte count
        # feeds its slow-consumer limit, task_done keeps Subscription.drain from hanging.
        self._sub._pending_size -= len(msg.data)
        self._queue.task_done()
        if msg.reply:  # only deliveries carry an ack subject; status messages never do
            msgs.append(msg)
            self._left -= 1
            return
        headers = msg.headers or {}
        status = headers.get("Status")
        if status is None or status == _HEARTBEAT:
            return  # not an answer to a pull request (nor an event): nothing to do
        self._left = 0
        if status not in _QUIET_END:
            self._error = PullStatusError(status, headers.get("Description", ""))
