"""Request/reply queries, answered the same way by every service.

``query_server.py`` answers a service's queries: it validates the request against its
contract, runs the service's handler and sends back the reply as JSON, **always** either
the query's result (``status: "ok"``) or ``contracts.errors.QueryError``
(``status: "error"``). The mapping from a failure to an error code lives here only
(``query_failure``):

- the request breaks its contract (``ValidationError``) -> ``invalid``, with each broken
  field in ``detail.errors``;
- ``QueryFailed`` raised by a handler -> its own code (``not_found``, ``pruned``,
  ``too_large`` …), message, hint and detail;
- the database or the network is unreachable (a transient error, a component not started
  yet, or one of the route's ``unavailable`` exceptions) -> ``unavailable``;
- anything else -> ``internal`` (logged with its traceback).

A reply is one NATS message, and the server refuses one over its ``max_payload``
(1 MiB by default): nats-py then raises ``MaxPayloadError`` and the client would only see
a timeout. ``fit`` serializes every reply once and compares it with the connection's
``max_payload`` less ``REPLY_MARGIN``; a handler that can shorten its answer does so
first (``fit_items``: page or drop the lowest ranked items), and what still does not fit
becomes ``too_large`` with the query's hint of what to ask instead.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from contracts.errors import ErrorCode, QueryError
from services.runtime.component import NotStarted
from services.runtime.errors import describe, is_transient

log = logging.getLogger("engram.queries")

# Room under max_payload for what is not the body: the reply's headers (its trace
# context) and the inbox subject.
REPLY_MARGIN = 4096
DEFAULT_MAX_PAYLOAD = 1024 * 1024
# Room kept when items are packed: the reply's counters grow by a few digits.
PACK_SLACK = 256
M = TypeVar("M", bound=BaseModel)


class QueryFailed(Exception):
    """Raised by a query's handler for an answer that is an error (not a bug)."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        hint: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.error = QueryError(code=code, message=message, hint=hint, detail=detail)


def validation_message(err: ValidationError, under: tuple[str, ...] = ()) -> str:
    """Each broken field with its path, for the caller to fix (at most ten)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in (*under, *e['loc'])) or '<root>'}: {e['msg']}"
        for e in err.errors(include_url=False)[:10]
    )


def _errors(err: ValidationError, under: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in (*under, *e["loc"])], "msg": e["msg"]}
        for e in err.errors(include_url=False)[:10]
    ]


def invalid(err: ValidationError, under: tuple[str, ...] = ()) -> QueryError:
    """``invalid``, naming each broken field by its path (``under`` a prefix)."""
    return QueryError(
        code=ErrorCode.invalid,
        message=f"bad request: {validation_message(err, under)}",
        detail={"errors": _errors(err, under)},
    )


def refused_request(err: ValidationError) -> QueryError:
    """A request that breaks its query's contract. Its fields are named under ``request``
    (``["request", "limit"]``), as a handler names a field it refuses (ingest's cursors)
    and as clients have always been told."""
    return invalid(err, ("request",))


def query_failure(
    exc: BaseException, subject: str, unavailable: tuple[type[BaseException], ...] = ()
) -> QueryError:
    """The one mapping from a failure to a ``QueryError`` (see the module docstring)."""
    if isinstance(exc, QueryFailed):
        return exc.error
    if isinstance(exc, ValidationError):
        return invalid(exc)
    if is_transient(exc) or isinstance(exc, (NotStarted, *unavailable)):
        log.warning("%s unavailable: %s", subject, describe(exc))
        return QueryError(code=ErrorCode.unavailable, message=describe(exc))
    log.error("%s failed", subject, exc_info=exc)
    return QueryError(code=ErrorCode.internal, message="internal error; see the service's log")


def reply_limit(nc: object) -> int:
    """Bytes a reply body may take on the NATS connection ``nc``: the ``max_payload`` the
    server announced, less ``REPLY_MARGIN`` (NATS's default 1 MiB before it connected)."""
    max_payload = getattr(nc, "max_payload", None)
    if not isinstance(max_payload, int) or max_payload <= 0:
        max_payload = DEFAULT_MAX_PAYLOAD
    return max_payload - REPLY_MARGIN


def too_large(subject: str, size: int, limit: int, hint: str, **detail: Any) -> QueryError:
    return QueryError(
        code=ErrorCode.too_large,
        message=f"the reply to {subject} would be {size} bytes; one message carries at most "
        f"{limit}",
        hint=hint,
        detail={"size": size, "limit": limit, **detail},
    )


def fit(reply: BaseModel, limit: int, subject: str, hint: str) -> bytes:
    """The reply's JSON, or a ``too_large`` error's when it is over ``limit`` bytes."""
    data = reply.model_dump_json().encode()
    if len(data) <= limit:
        return data
    log.warning("%s: reply of %d bytes over %d: answered too_large", subject, len(data), limit)
    return too_large(subject, len(data), limit, hint).model_dump_json().encode()


def json_size(model: BaseModel) -> int:
    """Bytes of the model's JSON (UTF-8), as sent."""
    return len(model.__pydantic_serializer__.to_json(model))


def fit_items(reply: M, field: str, limit: int) -> tuple[M, int]:
    """``reply`` with as many of its ``field`` list's leading items as fit in ``limit``
    bytes (the list is best or newest first), and how many were left out."""
    items: list[BaseModel] = getattr(reply, field)
    if json_size(reply) <= limit - PACK_SLACK:
        return reply, 0
    used = json_size(reply.model_copy(update={field: []})) + PACK_SLACK
    kept = 0
    for item in items:
        used += json_size(item) + 1  # and a comma
        if used > limit:
            break
        kept += 1
    return reply.model_copy(update={field: items[:kept]}), len(items) - kept
