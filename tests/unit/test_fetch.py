"""The fetch's bookkeeping, on a stand-in subscription: what is an event, what ends a pull
request, when a new one is sent. The real server is in tests/connected/test_fetch.py."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from nats.aio.msg import Msg

from services.runtime.fetch import Fetcher, PullStatusError


@dataclass
class FakeClient:
    sent: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)

    async def publish(self, subject: str, payload: bytes, reply: str) -> None:
        self.sent.append((subject, json.loads(payload), reply))


@dataclass
class FakeSubscription:
    _pending_queue: asyncio.Queue[Msg] = field(default_factory=asyncio.Queue)
    _pending_size: int = 0


@dataclass
class FakePull:
    _nc: FakeClient = field(default_factory=FakeClient)
    _sub: FakeSubscription = field(default_factory=FakeSubscription)
    _nms: str = "$JS.API.CONSUMER.MSG.NEXT.CHAT.svc"
    _deliver: str = "_INBOX.x"

    def deliver(self, *msgs: Msg) -> None:
        for msg in msgs:
            self._sub._pending_size += len(msg.data)
            self._sub._pending_queue.put_nowait(msg)


def event(n: int) -> Msg:
    return Msg(
        None,
        subject="chat.message.created",  # type: ignore[arg-type]
        reply=f"$JS.ACK.CHAT.svc.1.{n}.{n}.0.0",
        data=b'{"n": %d}' % n,
    )


def status(code: str, description: str = "") -> Msg:
    return Msg(
        None,
        subject="_INBOX.x",
        reply="",  # type: ignore[arg-type]
        headers={"Status": code, "Description": description},
    )


def fetcher() -> tuple[Fetcher, FakePull]:
    pull = FakePull()
    return Fetcher(pull), pull  # type: ignore[arg-type]


async def test_one_request_for_a_batch_and_its_leftovers_go_to_the_next_call() -> None:
    f, pull = fetcher()

    async def arrive(*ns: int) -> None:
        await asyncio.sleep(0.05)
        pull.deliver(*(event(n) for n in ns))

    task = asyncio.create_task(arrive(1, 2))
    first = await f.fetch(10, 1.0)
    await task
    assert [m.data for m in first] == [b'{"n": 1}', b'{"n": 2}']
    ((subject, body, reply),) = pull._nc.sent
    assert subject == pull._nms and reply == pull._deliver
    assert body["batch"] == 10 and 0.9e9 <= body["expires"] < 1e9
    # The request is still open (8 to come): what arrives later is the next call's, taken
    # without asking again.
    assert f.open
    pull.deliver(event(3), event(4))
    assert [m.data for m in await f.fetch(10, 1.0)] == [b'{"n": 3}', b'{"n": 4}']
    task = asyncio.create_task(arrive(5))
    assert [m.data for m in await f.fetch(10, 1.0)] == [b'{"n": 5}']
    await task
    assert len(pull._nc.sent) == 1
    assert pull._sub._pending_size == 0
    assert pull._sub._pending_queue._unfinished_tasks == 0  # type: ignore[attr-defined]


async def test_a_used_up_request_is_followed_by_the_next_at_once() -> None:
    f, pull = fetcher()
    pull.deliver(event(0))  # left over from an earlier request: taken, then ask for more
    assert len(await f.fetch(3, 1.0)) == 1
    assert len(pull._nc.sent) == 1 and f.open
    pull.deliver(event(1), event(2))
    assert len(await f.fetch(3, 1.0)) == 2  # one more to come: no new request yet
    assert len(pull._nc.sent) == 1
    pull.deliver(event(3))
    assert len(await f.fetch(3, 1.0)) == 1  # the request is used up: the next one goes out
    assert len(pull._nc.sent) == 2 and f.open
    # Not while stopping, nor while messages are still queued.
    pull.deliver(event(4), event(5), event(6))
    assert len(await f.fetch(3, 1.0, request=False)) == 3
    assert len(pull._nc.sent) == 2
    pull.deliver(event(7), event(8), event(9), event(10))
    assert len(await f.fetch(3, 1.0)) == 3
    assert len(pull._nc.sent) == 2


@pytest.mark.parametrize("code", ["404", "408"])
async def test_quiet_end_of_request_is_an_empty_batch(code: str) -> None:
    f, pull = fetcher()

    async def answer() -> None:
        await asyncio.sleep(0.02)
        pull.deliver(status(code, "Request Timeout"))

    task = asyncio.create_task(answer())
    started = time.monotonic()
    assert await f.fetch(10, 5.0) == []
    await task
    assert time.monotonic() - started < 1.0  # the status ended it, not our deadline
    assert f.idle
    # And the next call asks again.
    pull.deliver(event(1))
    assert len(await f.fetch(10, 5.0)) == 1


async def test_status_messages_are_never_events() -> None:
    f, pull = fetcher()
    pull.deliver(event(1), status("100", "Idle Heartbeat"), event(2), status("408"))
    got = await f.fetch(10, 1.0)
    assert [m.data for m in got] == [b'{"n": 1}', b'{"n": 2}']
    # The 408 ended the request, so the next one went out with these messages.
    assert len(pull._nc.sent) == 1 and f.open


async def test_conflict_with_nothing_to_return_raises() -> None:
    f, pull = fetcher()
    pull.deliver(status("409", "Exceeded MaxWaiting"))
    with pytest.raises(PullStatusError) as err:
        await f.fetch(10, 1.0)
    assert err.value.code == "409"
    assert "Exceeded MaxWaiting" in str(err.value)
    assert pull._nc.sent == []  # no request sent while the server says no


async def test_conflict_after_events_returns_them() -> None:
    f, pull = fetcher()
    pull.deliver(event(1), status("409", "Leadership Change"))
    assert len(await f.fetch(10, 1.0)) == 1
    assert f.idle


async def test_batch_size_caps_what_is_taken() -> None:
    f, pull = fetcher()
    pull.deliver(*(event(n) for n in range(7)))
    assert len(await f.fetch(5, 1.0)) == 5
    assert len(await f.fetch(5, 1.0)) == 2


async def test_unanswered_request_ends_at_its_deadline() -> None:
    f, pull = fetcher()
    started = time.monotonic()
    assert await f.fetch(10, 0.2) == []
    assert 0.19 <= time.monotonic() - started < 1.0
    assert not f.open
    assert await f.fetch(10, 0.2) == []
    assert len(pull._nc.sent) == 2


async def test_draining_sends_no_request_but_waits_for_the_open_one() -> None:
    f, pull = fetcher()
    assert await f.fetch(10, 0.3, request=False) == []  # nothing open: nothing to wait for
    assert pull._nc.sent == []

    async def later(n: int) -> None:
        await asyncio.sleep(0.05)
        pull.deliver(event(n))

    for n in (1, 2):  # the first call opens the request, the second only waits on it
        task = asyncio.create_task(later(n))
        assert len(await f.fetch(10, 0.3, request=n == 1)) == 1
        await task
    assert len(pull._nc.sent) == 1
    started = time.monotonic()
    assert await f.fetch(10, 0.3, request=False) == []  # until the open request is over
    assert time.monotonic() - started < 0.3
    assert f.idle and len(pull._nc.sent) == 1


async def test_a_request_used_up_while_waiting_is_followed_at_once() -> None:
    f, pull = fetcher()

    async def burst() -> None:
        await asyncio.sleep(0.05)
        pull.deliver(event(1), event(2), event(3))

    task = asyncio.create_task(burst())
    assert len(await f.fetch(3, 1.0)) == 3
    await task
    assert len(pull._nc.sent) == 2 and f.open


async def trickle(pull: FakePull, *numbers: int) -> None:
    """Delivers one event every 30 ms."""
    for n in numbers:
        await asyncio.sleep(0.03)
        pull.deliver(event(n))


async def test_linger_lets_a_batch_fill_and_ends_when_it_is_full() -> None:
    f, pull = fetcher()
    task = asyncio.create_task(trickle(pull, 1, 2, 3))
    started = time.monotonic()
    assert len(await f.fetch(3, 2.0, linger_s=1.0)) == 3  # full: no need to wait on
    assert time.monotonic() - started < 0.5
    await task
    # Not full: the linger ends it, and the request stays open for the next call.
    task = asyncio.create_task(trickle(pull, 4))
    started = time.monotonic()
    assert len(await f.fetch(5, 2.0, linger_s=0.2)) == 1
    assert 0.19 <= time.monotonic() - started < 1.0
    await task
    assert f.open


async def test_without_linger_a_trickle_is_several_batches() -> None:
    f, pull = fetcher()
    task = asyncio.create_task(trickle(pull, 0, 1, 2))
    assert len(await f.fetch(3, 2.0)) == 1
    await task
