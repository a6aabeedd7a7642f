"""One way to run a real worker in this process, shared by every service's connected
fixtures (``run_ingest``, ``run_audit``, ``run_checkpointer``, ``run_embedder``,
``run_memory``, ``run_context`` and the probe): its settings as the worker logs in, with
the tests' fast timings, and ``async with run(**overrides) as worker`` around the app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar, overload

from faststream import FastStream, TestApp

from services.runtime.settings import WorkerSettings
from services.runtime.worker import Worker
from tests.conftest import Env

S = TypeVar("S", bound=WorkerSettings)
T = TypeVar("T")
RunWorker = Callable[..., AbstractAsyncContextManager[Worker]]

# Retries and shutdown in fractions of a second, so a test waits on its own events, not
# on backoff; each service adds what its own loops need.
FAST_TIMINGS: Mapping[str, float] = {
    "retry_base_s": 0.05,
    "retry_max_s": 0.2,
    "fetch_wait_s": 0.5,
    "drain_timeout_s": 5.0,
}


def worker_settings(settings: type[S], env: Env, fast: Mapping[str, Any], **overrides: Any) -> S:
    """``settings`` of a worker that logs in as its service does (its own database role
    and NATS user), with ``fast`` timings, then ``overrides``."""
    values = {
        "nats_url": env.nats_login(settings.service),
        "database_url": env.login(settings.service),
        **fast,
        **overrides,
    }
    return settings(**values)


@overload
def in_process(
    create_app: Callable[[S], tuple[FastStream, Worker]], settings: Callable[..., S]
) -> RunWorker: ...


@overload
def in_process(
    create_app: Callable[[S], tuple[FastStream, Worker]],
    settings: Callable[..., S],
    wrap: Callable[[FastStream, Worker], T],
) -> Callable[..., AbstractAsyncContextManager[T]]: ...


def in_process(
    create_app: Callable[[S], tuple[FastStream, Worker]],
    settings: Callable[..., S],
    wrap: Callable[[FastStream, Worker], Any] | None = None,
) -> Callable[..., AbstractAsyncContextManager[Any]]:
    """``async with run(**overrides) as worker``: the app ``create_app`` makes of
    ``settings(**overrides)``, started and stopped as ``engram run`` would, in this
    process; ``wrap`` turns (app, worker) into what the block gets instead of the worker."""

    @asynccontextmanager
    async def running(**overrides: Any) -> AsyncIterator[Any]:
        app, worker = create_app(settings(**overrides))
        async with TestApp(app):
            yield worker if wrap is None else wrap(app, worker)

    return running
