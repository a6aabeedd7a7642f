from __future__ import annotations

import asyncpg
import pytest

from services.runtime.errors import is_transient, retry_delay


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
        (asyncpg.exceptions.InsufficientPrivilegeError("x"), True),
        (ValueError("x"), False),
    ],
)
def test_transient_classification(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient
