"""Asking another service: one typed request/reply with its timeout, and the query's
vector, made once per build (``query.embed``) and handed to each search, each of which
would otherwise embed the same text again."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from pydantic import BaseModel, TypeAdapter, ValidationError

from contracts.embedding import (
    EMBED_REPLY,
    EMBED_SUBJECT,
    EmbedReply,
    EmbedRequest,
    QueryEmbedding,
)
from contracts.errors import ErrorCode, QueryError
from services.context.settings import ContextSettings

log = logging.getLogger("engram.context.sources")


class SourceFailed(Exception):
    """A source answered with an error, or something that is not its reply."""


@dataclass(frozen=True)
class Timeouts:
    history: float
    memory: float
    knowledge: float
    state: float
    embed: float = 0.5

    @classmethod
    def of(cls, settings: ContextSettings, cap_ms: int | None) -> Timeouts:
        cap = float("inf") if cap_ms is None else cap_ms / 1000
        return cls(
            min(settings.history_timeout_s, cap),
            min(settings.memory_timeout_s, cap),
            min(settings.knowledge_timeout_s, cap),
            min(settings.state_timeout_s, cap),
            min(settings.embed_timeout_s, cap),
        )


Vector = asyncio.Future[QueryEmbedding | None]
# A search waits for the shared vector at most this part of its own timeout, then asks
# without it (the searched service embeds the text): a slow embedder costs a source time,
# never its answer.
VECTOR_WAIT_SHARE = 0.5


async def embed(nc: NatsClient, text: str, timeout: float) -> QueryEmbedding | None:
    """The query's vector, made once for every search of the build; None when the embedder
    does not give one (each search then embeds the text itself, as without it)."""
    try:
        answer = await ask(nc, EMBED_SUBJECT, EmbedRequest(texts=[text]), EMBED_REPLY, timeout)
    except Exception as exc:
        log.info("no shared query vector (%s): the searches embed the query", exc)
        return None
    if not isinstance(answer, EmbedReply):
        return None
    return QueryEmbedding(model_id=answer.model_id, vector=answer.vectors[0])


async def with_vector(vector: Vector | None, timeout: float) -> tuple[QueryEmbedding | None, float]:
    """The shared vector (None if it is not there in time) and what is left of a source's
    ``timeout`` after waiting for it: the wait is part of the source's time."""
    if vector is None:
        return None, timeout
    started = time.perf_counter()
    await asyncio.wait({vector}, timeout=timeout * VECTOR_WAIT_SHARE)
    found = vector.result() if vector.done() else None
    return found, timeout - (time.perf_counter() - started)


async def ask(
    nc: NatsClient, subject: str, request: BaseModel, reply: TypeAdapter[Any], timeout: float
) -> Any:
    """The typed result of one query; ``SourceFailed`` with words for anything else."""
    started = time.perf_counter()
    try:
        msg = await nc.request(subject, request.model_dump_json().encode(), timeout=timeout)
    except nats.errors.NoRespondersError:
        raise SourceFailed(f"no service answers {subject}") from None
    except (nats.errors.TimeoutError, TimeoutError):
        waited = (time.perf_counter() - started) * 1000
        raise SourceFailed(f"{subject} did not answer within {waited:.0f} ms") from None
    try:
        answer = reply.validate_json(msg.data)
    except ValidationError as exc:
        raise SourceFailed(
            f"{subject} answered something else: {exc.error_count()} errors"
        ) from None
    if isinstance(answer, QueryError):
        if answer.code is ErrorCode.not_found:
            return None
        raise SourceFailed(f"{subject}: {answer.code.value}: {answer.message}")
    return answer
