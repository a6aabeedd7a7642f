from __future__ import annotations

import asyncpg
import pytest

from services.runtime.errors import describe, is_transient, retry_delay


def test_retry_delay_grows_and_caps() -> None:
    delays = [retry_delay(n, 0.5, 30.0) for n in range(1, 10)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert delays[-1] == 30.0
    assert delays == sorted(delays)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (asyncpg.exceptions.SerializationError("x"), True),
        (asyncpg.exceptions.DeadlockDetectedError("x"), True),
        (asyncpg.exceptions.AdminShutdownError("x"), True),
        (asyncpg.exceptions.ForeignKeyViolationError("x"), False),
        (asyncpg.exceptions.CheckViolationError("x"), False),
        (asyncpg.exceptions.InsufficientPrivilegeError("permission denied for table x"), True),
        (
            asyncpg.exceptions.InsufficientPrivilegeError(
                'new row violates row-level security policy for table "messages"'
            ),
            False,  # the event names another tenant's id: poison, not a deployment fault
        ),
        (ValueError("x"), False),
    ],
)
def test_transient_classification(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_a_tenant_wall_refusal_says_so() -> None:
    exc = asyncpg.exceptions.InsufficientPrivilegeError(
        'new row violates row-level security policy (USING expression) for table "memories"'
    )
    assert describe(exc).startswith("refused by tenant isolation")
    assert "memories" in describe(exc)
