"""How a failure is handled, decided in one place for every service.

- ``InvalidEvent``: the bytes break the contract. DLQ with the reason, terminate, never retry.
- transient (database or network down, timeout, serialization failure): nak with a growing
  delay; after ``max_deliver`` deliveries the message goes to the DLQ as exhausted.
- anything else while applying one event: that event is poison. It is isolated from its
  batch, sent to the DLQ with the error, and the rest of the batch commits.
"""

from __future__ import annotations

import asyncio

import asyncpg


class InvalidEvent(ValueError):
    """The message cannot be read as the contract its subject promises."""


TRANSIENT_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "53300",  # too_many_connections
        "55P03",  # lock_not_available
        "57014",  # query_canceled (statement timeout)
        "57P01",
        "57P02",
        "57P03",  # admin/crash shutdown, cannot connect now
        # The deployment is wrong, not the event (a missing grant, table or migration):
        # retry until an operator fixes it rather than dead-letter every event meanwhile.
        "42501",  # insufficient_privilege
        "42P01",  # undefined_table
        "42883",  # undefined_function
    }
)


def refused_by_tenant_wall(exc: BaseException) -> bool:
    """Row-level security refused a row: the event names an id another tenant holds (its
    row is invisible to this batch, or the row it would write is of another tenant). Same
    SQLSTATE as a missing grant, but caused by the event: poison, not transient."""
    return getattr(exc, "sqlstate", None) == "42501" and "row-level security" in str(exc)


def is_transient(exc: BaseException) -> bool:
    if refused_by_tenant_wall(exc):
        return False
    if isinstance(
        exc,
        OSError
        | asyncio.TimeoutError
        | TimeoutError
        | asyncpg.InterfaceError
        # asyncpg's protocol state after its connection died mid-operation, never the event's
        | asyncpg.exceptions.InternalClientError,
    ):
        return True
    if isinstance(exc, asyncpg.PostgresConnectionError):
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(sqlstate, str) and (
        sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith("08")  # connection exceptions
    )


def retry_delay(deliveries: int, base_s: float, max_s: float) -> float:
    """Exponential backoff for a nak: base, 2*base, 4*base... capped at max."""
    return float(min(base_s * 2 ** max(deliveries - 1, 0), max_s))


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if refused_by_tenant_wall(exc):
        text = f"refused by tenant isolation (an id it names belongs to another tenant): {text}"
    return text if len(text) <= 2000 else text[:2000] + "..."
