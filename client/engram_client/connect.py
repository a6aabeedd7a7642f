"""Opening the NATS connection: bounded in time, quiet, and failing with one clear error.

nats-py on its own retries an unreachable server (60 times, 2 s apart, by default) and
logs a traceback for every try; with reconnects for ever it never gives up. The first
connection is bounded instead (``Connection.connect_within_s``), and what went wrong is
kept for ``ConnectFailed``; reconnects of an established connection follow
``Connection.max_reconnect_attempts`` and are logged one line each.

``OwnsConnection`` is the ``connect()`` of LangGraph's ``EngramSaver`` and ``EngramStore``:
one object on a connection of its own, as LangGraph's savers and stores open theirs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client as NatsClient

from engram_client.errors import ConnectFailed
from engram_client.options import Connection

log = logging.getLogger("engram_client")


def hosts(options: Connection) -> str:
    """The servers as a user may be shown them: host and port, never a password."""
    return ", ".join(urlsplit(s).netloc.rsplit("@", 1)[-1] for s in options.server_list())


async def open_connection(options: Connection) -> NatsClient:
    nc = NatsClient()
    seen: list[BaseException] = []

    async def on_error(exc: Exception) -> None:
        seen.append(exc)
        log.warning("NATS at %s: %s", hosts(options), exc or type(exc).__name__)

    try:
        await asyncio.wait_for(
            nc.connect(**options.nats_options(), error_cb=on_error),  # type: ignore[arg-type]
            options.connect_within_s,
        )
    except asyncio.CancelledError:
        await _close(nc)
        raise
    except Exception as exc:  # a timeout, or a refusal nats-py does not retry
        await _close(nc)
        cause = seen[-1] if seen else exc
        raise ConnectFailed(hosts(options), options.connect_within_s, cause) from cause
    return nc


async def _close(nc: NatsClient) -> None:
    with contextlib.suppress(Exception):
        await nc.close()


class OwnsConnection:
    """``connect()``: an instance on a NATS connection it owns. A subclass takes the
    connection first and ``tenant_id`` by keyword; it starts and stops what it runs
    meanwhile in ``_opened`` and ``_closing``."""

    if TYPE_CHECKING:  # the constructor every subclass has

        def __init__(self, nc: NatsClient, *, tenant_id: str, **options: Any) -> None: ...

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        url: str,
        *,
        tenant_id: str,
        nats_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> AsyncIterator[Self]:
        """An instance on its own NATS connection, drained on exit. ``nats_options`` go to
        ``nats.connect`` (credentials, ``tls``, ``inbox_prefix``: engram's users reply on
        their own, ...); ``options`` to the constructor."""
        nc = await nats.connect(url, **(nats_options or {}))
        try:
            own = cls(nc, tenant_id=tenant_id, **options)
            await own._opened()
            try:
                yield own
            finally:
                await own._closing()
        finally:
            await nc.drain()

    async def _opened(self) -> None:
        """Start what runs while connected (nothing here)."""

    async def _closing(self) -> None:
        """Stop it, before the connection drains (nothing here)."""
