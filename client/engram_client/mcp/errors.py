"""Every tool answers with ``answer``: its result as structured content (and the same JSON
as text), or, for every failure it anticipates, an MCP tool error (``is_error``) whose
structured content and text are engram's one error model, ``contracts.errors.QueryError``:
``code`` (invalid, not_found, pruned, too_large, unavailable, internal), ``message``, and
``hint`` and ``detail`` when there are. No traceback reaches the model; a bug in a tool is
the SDK's generic tool error, with the traceback in the server's log (stderr)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable
from typing import Any

from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel, ValidationError

from contracts.errors import ErrorCode, QueryError
from engram_client.errors import BadReply, EngramError, PublishFailed, QueryRejected, RequestTimeout

log = logging.getLogger("engram_client.mcp")


class Refused(Exception):
    """A tool's own refusal (out of scope, inconsistent arguments), in engram's model."""

    def __init__(self, code: ErrorCode, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.error = QueryError(code=code, message=message, **extra)


def as_query_error(exc: Exception) -> QueryError:
    """engram's error model for what a tool met."""
    if isinstance(exc, Refused | QueryRejected):
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


def _result(data: dict[str, Any], *, error: bool = False) -> CallToolResult:
    text = TextContent(type="text", text=json.dumps(data, ensure_ascii=False))
    return CallToolResult(content=[text], structured_content=data, is_error=error)


async def answer(work: Awaitable[BaseModel | dict[str, Any]]) -> CallToolResult:
    """The tool's result, or its failure as engram's error model."""
    try:
        result = await work
    except (Refused, EngramError, ValidationError) as exc:
        error = as_query_error(exc)
        log.info("tool refused: %s: %s", error.code.value, error.message)
        return _result(error.model_dump(mode="json", exclude_none=True), error=True)
    if isinstance(result, BaseModel):
        return _result(result.model_dump(mode="json", by_alias=True))
    return _result(result)
