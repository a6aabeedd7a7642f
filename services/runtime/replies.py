"""The reply of a request/reply query that could not be answered, the same for every
service that answers with ``contracts.embedding.QueryError``."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from contracts.embedding import QueryError, QueryErrorCode
from services.runtime.errors import describe, is_transient

log = logging.getLogger("engram.queries")


def validation_message(err: ValidationError) -> str:
    """Each broken field with its path, for the caller to fix (at most ten)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
        for e in err.errors(include_url=False)[:10]
    )


def query_failure(
    exc: Exception, subject: str, unavailable: tuple[type[Exception], ...] = ()
) -> QueryError:
    """invalid_request for a request that breaks its contract; unavailable for a
    transient failure or one of ``unavailable``; internal (logged) for anything else."""
    if isinstance(exc, ValidationError):
        return QueryError(code=QueryErrorCode.invalid_request, message=validation_message(exc))
    if is_transient(exc) or isinstance(exc, unavailable):
        log.warning("%s unavailable: %s", subject, describe(exc))
        return QueryError(code=QueryErrorCode.unavailable, message=describe(exc))
    log.exception("%s failed", subject)
    return QueryError(code=QueryErrorCode.internal, message="internal error; see the log")
