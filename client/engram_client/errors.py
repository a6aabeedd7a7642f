"""The client's exceptions: one hierarchy, built from the one error model of the bus
(``contracts.errors.QueryError`` and its ``ErrorCode``).

A query whose reply is a ``QueryError`` raises the subclass of ``QueryRejected`` for its
code, which keeps the whole reply (``.error``: code, message, hint, detail). What never
got a reply raises ``RequestTimeout``; an event JetStream did not store raises
``PublishFailed``. Everything derives from ``EngramError``.
"""

from __future__ import annotations

from typing import Any

from contracts.errors import ErrorCode, QueryError


class EngramError(Exception):
    """Base of every error the client raises."""


class QueryRejected(EngramError):
    """The service answered with a ``QueryError``: see ``.error`` (and ``.code``)."""

    code: ErrorCode

    def __init__(self, subject: str, error: QueryError) -> None:
        text = f"{subject}: {error.code.value}: {error.message}"
        if error.hint:
            text += f" (hint: {error.hint})"
        super().__init__(text)
        self.subject = subject
        self.error = error

    @property
    def message(self) -> str:
        return self.error.message

    @property
    def hint(self) -> str | None:
        return self.error.hint

    @property
    def detail(self) -> dict[str, Any] | None:
        return self.error.detail


class InvalidRequest(QueryRejected):
    """The request breaks its contract (``detail.errors`` names each field): fix it."""

    code = ErrorCode.invalid


class NotFound(QueryRejected):
    """No such thing (state, version) in this tenant."""

    code = ErrorCode.not_found


class Pruned(QueryRejected):
    """It existed, but retention removed it."""

    code = ErrorCode.pruned


class TooLarge(QueryRejected):
    """The answer would not fit in one NATS message: ask for less (see ``.hint``)."""

    code = ErrorCode.too_large


class Unavailable(QueryRejected):
    """The service cannot answer now; raised once the client's retries are used up."""

    code = ErrorCode.unavailable


class ServerError(QueryRejected):
    """A bug in the service (its log has the traceback)."""

    code = ErrorCode.internal


REJECTIONS: dict[ErrorCode, type[QueryRejected]] = {
    cls.code: cls for cls in (InvalidRequest, NotFound, Pruned, TooLarge, Unavailable, ServerError)
}
# Every code of the error model has its own class (a new code without one fails here).
assert set(REJECTIONS) == set(ErrorCode), set(ErrorCode) - set(REJECTIONS)


def rejection(subject: str, error: QueryError) -> QueryRejected:
    """The exception for a ``QueryError`` reply."""
    return REJECTIONS[error.code](subject, error)


class RequestTimeout(EngramError, TimeoutError):
    """No reply (or no responder) within the timeout, on every attempt."""

    def __init__(self, subject: str, attempts: int, timeout_s: float, why: str) -> None:
        super().__init__(
            f"{subject}: no reply within {timeout_s:g} s on {attempts} attempt(s) ({why})"
        )
        self.subject = subject
        self.attempts = attempts


class PublishFailed(EngramError):
    """JetStream did not acknowledge the event (no stream for its subject, no permission,
    or no ack within the timeout on every attempt). Publishing it again is safe: JetStream
    drops a copy with the same ``Nats-Msg-Id`` within its duplicate window."""

    def __init__(self, subject: str, event_id: str, why: str) -> None:
        super().__init__(f"{subject}: event {event_id} not stored: {why}")
        self.subject = subject
        self.event_id = event_id


class ConnectFailed(EngramError):
    """The first connection to NATS did not succeed in time (unreachable, refused login,
    an untrusted TLS certificate: ``__cause__`` is the last error)."""

    def __init__(self, where: str, within_s: float, cause: BaseException) -> None:
        why = str(cause) or type(cause).__name__
        super().__init__(f"cannot connect to NATS at {where} within {within_s:g} s: {why}")
        self.cause = cause


class BadReply(EngramError):
    """The reply did not match the query's published contract (a client/server mismatch)."""
