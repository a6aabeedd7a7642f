"""How the CLI reaches its servers: within a time limit, and failing with one line that
says which server and what to fix (``Unreachable``), never a hang or a traceback.

nats-py on its own retries an unreachable server 60 times, 2 s apart, and prints a
traceback for every attempt (its default ``error_cb``); with ``max_reconnect_attempts=0``
it retries forever. A tool wants neither: it tries each server of NATS_URL at most twice,
quietly, and gives up after ``ENGRAM_CONNECT_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError

from services.runtime.bus_setup import connect
from services.runtime.errors import describe
from services.runtime.nats_servers import parse_servers


class Unreachable(Exception):
    """A server cannot be used; the message is the one line the user reads."""


@dataclass(frozen=True)
class Where:
    """A server as the user may be shown it: host and port, never the password."""

    what: str  # "NATS" or "PostgreSQL"
    host: str

    def __str__(self) -> str:
        return f"{self.what} at {self.host}"


def nats_where(url: str) -> Where:
    try:
        hosts = [urlsplit(s).netloc.rsplit("@", 1)[-1] for s in parse_servers(url).servers]
    except ValueError:
        hosts = ["?"]
    return Where("NATS", ", ".join(hosts))


def postgres_where(dsn: str) -> Where:
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1] or "localhost"
    return Where("PostgreSQL", f"{host}{parts.path}")


def why(exc: BaseException) -> str:
    return describe(exc) if str(exc) else f"{type(exc).__name__} (timed out)"


async def open_nats(
    url: str, timeout_s: float, setting: str = "ENGRAM_CONNECT_TIMEOUT_S"
) -> NatsClient:
    """A connected client of ``url`` (the user it names), or ``Unreachable``. ``setting``:
    the name of the time limit's setting, for the message."""
    where = nats_where(url)
    errors: list[Exception] = []

    async def remember(exc: Exception) -> None:
        errors.append(exc)

    try:
        return await asyncio.wait_for(
            connect(
                url,
                connect_timeout=max(0.5, timeout_s / 2),
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.2,
                error_cb=remember,
            ),
            timeout_s,
        )
    except TimeoutError:
        cause = f": {why(errors[-1])}" if errors else ""
        raise Unreachable(
            f"cannot reach {where} within {timeout_s:g} s{cause} "
            f"(check NATS_URL; {setting} sets the limit)"
        ) from None
    except (OSError, NatsError, ValueError) as exc:
        last = errors[-1] if errors else exc
        raise Unreachable(
            f"cannot use {where}: {plain_nats_error(last)} (check NATS_URL)"
        ) from None


def plain_nats_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "authorization" in text.lower():
        return "it refused the login (user or password of NATS_URL)"
    return describe(exc)


async def open_postgres(dsn: str, timeout_s: float) -> asyncpg.Connection:
    """A connection to ``dsn``, or ``Unreachable`` naming what is wrong with it."""
    where = postgres_where(dsn)
    try:
        conn: asyncpg.Connection = await asyncpg.connect(dsn, timeout=timeout_s)
        return conn
    except asyncpg.InvalidCatalogNameError:
        raise Unreachable(
            f"{where}: no such database (check the database name of DATABASE_URL; "
            "`engram migrate` does not create it)"
        ) from None
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError):
        raise Unreachable(f"{where} refused the login (user or password of DATABASE_URL)") from None
    except (TimeoutError, OSError) as exc:
        raise Unreachable(
            f"cannot reach {where} within {timeout_s:g} s: {why(exc)} (check DATABASE_URL)"
        ) from None
    except (ValueError, asyncpg.ClientConfigurationError) as exc:
        raise Unreachable(f"DATABASE_URL is not a usable PostgreSQL URL: {exc}") from None
    except asyncpg.PostgresError as exc:
        raise Unreachable(f"{where}: {describe(exc)} (check DATABASE_URL)") from None


async def check_reachable(
    nats_url: str | None,
    dsn: str | None,
    timeout_s: float,
    setting: str = "ENGRAM_CONNECT_TIMEOUT_S",
) -> None:
    """Connect to each server given and close again: ``Unreachable`` for the first that
    cannot be used (a command's or a worker's check before it starts its work)."""
    if nats_url:
        await (await open_nats(nats_url, timeout_s, setting)).close()
    if dsn:
        await (await open_postgres(dsn, timeout_s)).close()
