"""One request/reply with the bus's error model and bounded retries: what every query and
command of the client, ``EngramSaver`` and ``EngramStore`` go through."""

from __future__ import annotations

import asyncio

import nats.errors
from nats.aio.client import Client as NatsClient
from pydantic import BaseModel, RootModel, ValidationError

from contracts.errors import ErrorCode, QueryError
from engram_client.errors import BadReply, RequestTimeout, rejection
from engram_client.options import Retry


async def ask(
    nc: NatsClient, subject: str, body: bytes, answer_model: type[BaseModel], policy: Retry
) -> BaseModel:
    """The reply's result; a ``QueryError`` reply raises its ``QueryRejected``. Retried as
    ``policy`` says on no reply, no responder or ``unavailable`` (every query and command is
    safe to repeat); ``RequestTimeout`` when no try got an answer."""
    delays = policy.delays()
    why = ""
    for attempt in range(policy.attempts):
        try:
            msg = await nc.request(subject, body, timeout=policy.timeout_s)
        except nats.errors.NoRespondersError:
            why = "no responder: is the service running?"
        except nats.errors.TimeoutError:
            why = "timeout"
        else:
            answer = parse(subject, answer_model, msg.data)
            if not isinstance(answer, QueryError):
                return answer
            if answer.code != ErrorCode.unavailable or attempt + 1 == policy.attempts:
                raise rejection(subject, answer)
            why = f"unavailable: {answer.message}"
        delay = next(delays, None)
        if delay is None:
            break
        await asyncio.sleep(delay)
    raise RequestTimeout(subject, policy.attempts, policy.timeout_s, why)


def parse(subject: str, answer_model: type[BaseModel], data: bytes) -> BaseModel:
    try:
        answer = answer_model.model_validate_json(data)
    except ValidationError as exc:
        raise BadReply(f"{subject}: the reply breaks its contract: {exc}") from exc
    root = answer.root if isinstance(answer, RootModel) else answer
    if not isinstance(root, BaseModel):
        raise BadReply(f"{subject}: unexpected reply {root!r}")
    return root
