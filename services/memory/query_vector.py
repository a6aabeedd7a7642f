"""The query's vector for ``query.memory.search``: the caller's (``query_vector``) when it
is of the active model, else the embedder's (``query.embed``), as before.

This service loads no model, so "the active model" is the one the embedder last named in a
``query.embed`` reply (``ActiveModel``), for ``query_model_ttl_s`` seconds. A supplied
vector of another model (the embedder switched models, or the caller embedded elsewhere) is
not searched: it would compare vectors of two models. The text is embedded instead, and
the reply says so (``query_vector: "replaced"``). A vector that names the active model
but has another length is a caller's bug: ``invalid``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from nats.aio.client import Client as NatsClient

from contracts.embedding import EMBED_REPLY, EMBED_SUBJECT, EmbedRequest, QueryVectorUse
from contracts.errors import ErrorCode, QueryError
from contracts.memory_search import MemorySearchRequest
from services.runtime.errors import describe
from services.runtime.replies import QueryFailed

log = logging.getLogger("engram.memory.search")


class EmbedderUnavailable(RuntimeError):
    pass


class Query(NamedTuple):
    model_id: str
    vector: np.ndarray
    use: QueryVectorUse


@dataclass
class ActiveModel:
    """The model of the latest ``query.embed`` reply and when it was seen."""

    ttl_s: float
    model_id: str | None = None
    dimensions: int = 0
    seen_at: float = float("-inf")

    def learn(self, model_id: str, dimensions: int) -> None:
        self.model_id, self.dimensions, self.seen_at = model_id, dimensions, time.monotonic()

    def current(self) -> str | None:
        fresh = time.monotonic() - self.seen_at <= self.ttl_s
        return self.model_id if fresh else None


async def embed_query(nc: NatsClient, text: str, timeout: float) -> tuple[str, np.ndarray]:
    try:
        msg = await nc.request(
            EMBED_SUBJECT, EmbedRequest(texts=[text]).model_dump_json().encode(), timeout=timeout
        )
    except Exception as exc:
        raise EmbedderUnavailable(f"query.embed did not answer: {describe(exc)}") from exc
    reply = EMBED_REPLY.validate_json(msg.data)
    if isinstance(reply, QueryError):
        raise EmbedderUnavailable(f"query.embed: {reply.message}")
    return reply.model_id, np.asarray(reply.vectors[0], dtype=np.float32)


def _check_length(model_id: str, dimensions: int, length: int) -> None:
    if length != dimensions:
        raise QueryFailed(
            ErrorCode.invalid,
            f"query_vector has {length} values; {model_id} makes {dimensions}",
            hint="send the vector of query.embed's reply as it is, or no query_vector",
            detail={"model_id": model_id, "dimensions": dimensions, "length": length},
        )


async def query_of(
    nc: NatsClient, active: ActiveModel, request: MemorySearchRequest, timeout: float
) -> Query:
    supplied = request.query_vector
    if supplied is not None and supplied.model_id == active.current():
        _check_length(supplied.model_id, active.dimensions, len(supplied.vector))
        vector = np.asarray(supplied.vector, dtype=np.float32)
        return Query(supplied.model_id, vector, QueryVectorUse.supplied)
    model_id, vector = await embed_query(nc, request.text, timeout)
    active.learn(model_id, len(vector))
    if supplied is None:
        return Query(model_id, vector, QueryVectorUse.embedded)
    if supplied.model_id == model_id:  # the active model was not known yet: now it is
        _check_length(model_id, len(vector), len(supplied.vector))
        return Query(model_id, vector, QueryVectorUse.embedded)
    log.info(
        "query_vector of %s, not the active %s: embedded the text", supplied.model_id, model_id
    )
    return Query(model_id, vector, QueryVectorUse.replaced)
