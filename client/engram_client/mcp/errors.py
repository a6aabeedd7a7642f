"""Every failure a tool anticipates becomes an MCP tool error (``is_error``) whose text is
engram's one error model, ``contracts.errors.QueryError``, as JSON: ``code`` (invalid,
not_found, pruned, too_large, unavailable, internal), ``message``, and ``hint`` and
``detail`` when there are. No traceback reaches the model; the SDK logs the failure at
INFO on stderr."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError

from contracts.errors import ErrorCode, QueryError
from engram_client.errors import (
    BadReply,
    EngramError,
    PublishFailed,
    QueryRejected,
    RequestTimeout,
)


def rejected(code: ErrorCode, message: str, **extra: Any) -> ToolError:
    """A tool error carrying ``code`` and ``message`` (``hint``, ``detail`` by keyword)."""
    return ToolError(
        QueryError(code=code, message=message, **extra).model_dump_json(exclude_none=True)
    )


def as_query_error(exc: Exception) -> QueryError:
    """engram's error model for what a tool met."""
    if isinstance(exc, QueryRejected):
        return exc.error
    if isinstance(exc, RequestTimeout):
        return QueryError(
            code=ErrorCode.unavailable,
            message=str(exc),
            hint="the engram service that answers it is not reachable now: try again later",
        )
    if isinstance(exc, PublishFailed):
        return QueryError(code=ErrorCode.unavailable, message=str(exc), hint="try again later")
    if isinstance(exc, ValidationError):
        return QueryError(
            code=ErrorCode.invalid,
            message=f"{exc.title}: {exc.error_count()} invalid field(s)",
            detail={"errors": [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]},
        )
    if isinstance(exc, BadReply):
        return QueryError(code=ErrorCode.internal, message=str(exc))
    return QueryError(code=ErrorCode.internal, message=type(exc).__name__)


@contextmanager
def reported() -> Iterator[None]:
    """Turn the client's errors and contract violations into tool errors (not crashes)."""
    try:
        yield
    except (EngramError, ValidationError) as exc:
        # ``from None``: the model reads the error model, never a chain of exceptions.
        raise ToolError(as_query_error(exc).model_dump_json(exclude_none=True)) from None
