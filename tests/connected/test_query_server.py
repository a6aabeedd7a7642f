"""The query server (``runtime/query_server.py``) against a real nats-server: at most
``max_workers`` requests of a route at once, the requests it has received are answered
when it stops, a request with no reply subject costs nothing, and its health says whether
it is subscribed."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from nats.aio.client import Client as NatsClient
from pydantic import BaseModel, Field

from services.runtime.router import QueryRoute
from tests.queries import answering

pytestmark = pytest.mark.connected

SUBJECT = "query.probe.slow"


class SlowRequest(BaseModel):
    tenant_id: str = Field(description="Whose data.", examples=["acme"])
    n: int = Field(description="Which request.", examples=[1])


class SlowReply(BaseModel):
    status: str = "ok"
    n: int


class Slow:
    """A handler that takes 0.2 s and counts how many of it run at once."""

    def __init__(self) -> None:
        self.running = self.most = self.done = 0

    async def __call__(self, request: SlowRequest, limit: int) -> SlowReply:
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0.2)
        self.running -= 1
        self.done += 1
        return SlowReply(n=request.n)


def route(handler: Slow, max_workers: int) -> QueryRoute:
    return QueryRoute(SUBJECT, SlowRequest, handler, "Slow.", "Wait.", max_workers=max_workers)


async def ask(nc: NatsClient, n: int) -> int:
    body = json.dumps({"tenant_id": "acme", "n": n}).encode()
    reply = await nc.request(SUBJECT, body, timeout=10)
    return int(json.loads(reply.data)["n"])


async def test_at_most_max_workers_requests_run_at_once(nc: NatsClient) -> None:
    slow = Slow()
    async with answering(nc, [route(slow, max_workers=2)]):
        started = time.monotonic()
        answers = await asyncio.gather(*(ask(nc, n) for n in range(6)))
        took = time.monotonic() - started
    assert sorted(answers) == list(range(6))
    assert slow.most == 2
    assert took >= 0.55, took  # three rounds of two


async def test_requests_received_before_the_stop_are_answered(nc: NatsClient) -> None:
    slow = Slow()
    async with answering(nc, [route(slow, max_workers=1)]) as server:
        asking = [asyncio.create_task(ask(nc, n)) for n in range(5)]
        await nc.flush()
        await asyncio.sleep(0.1)  # all five received: one answering, four queued
        await server.stop()
        assert not server.health().ok
        assert sorted(await asyncio.gather(*asking)) == list(range(5))
    assert slow.done == 5


async def test_a_request_without_a_reply_subject_is_served_and_the_next_answered(
    nc: NatsClient,
) -> None:
    slow = Slow()
    async with answering(nc, [route(slow, max_workers=1)]) as server:
        assert server.health().ok
        await nc.publish(SUBJECT, json.dumps({"tenant_id": "acme", "n": 7}).encode())
        assert await ask(nc, 8) == 8
    assert slow.done == 2
