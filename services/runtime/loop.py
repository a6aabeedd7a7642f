"""The one background loop: every periodic or notified job of a worker is a ``Loop``.

A loop runs its ``step`` while the step reports more work waiting, then sleeps until it
is woken — ``wake()``, or a PostgreSQL ``NOTIFY`` on its ``channel`` — or ``every_s``
passes. A step that fails is logged and tried again after a backoff that doubles up to
``backoff_max_s``; the health shows the failure until a step succeeds again. The LISTEN
connection is opened again whenever it is found closed (a restarted database), and
polling covers the time it is down, so a missed notification only delays work.

``stop`` cancels the loop at its next ``await`` and, with ``final_step``, runs the step
once more so that what was committed just before shutdown is not left for the next
start (the outbox drain).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from services.runtime.component import Health, WorkerContext
from services.runtime.errors import describe

log = logging.getLogger("engram.loop")

# A step returns True when more work is waiting (run again at once), else False/None.
Step = Callable[[], Awaitable[bool | None]]


class Loop:
    def __init__(
        self,
        name: str,
        step: Step,
        *,
        every_s: float,
        channel: str | None = None,
        backoff_max_s: float = 30.0,
        first_after_s: float = 0.0,
        final_step: bool = False,
    ) -> None:
        self.name = name
        self._step = step
        self._every_s = every_s
        self._channel = channel
        self._backoff_max_s = backoff_max_s
        self._first_after_s = first_after_s
        self._final_step = final_step
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._dsn: str | None = None
        self._listener: asyncpg.Connection | None = None
        self._stopping = False
        self.failures = 0  # consecutive failed steps
        self.last_error: str | None = None
        self.last_success: float | None = None  # time.time() of the last good step
        self.steps = 0

    async def start(self, ctx: WorkerContext) -> None:
        self._dsn = ctx.settings.database_url
        if self._channel is not None:
            await self._listen()
        self._task = asyncio.create_task(self._run(), name=f"loop:{self.name}")
        self._stopping = False
        ctx.supervisor.watch(self._task, f"the {self.name} loop", stopped=lambda: self._stopping)

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> bool | None:
        """One step now, outside the loop (tools and tests)."""
        return await self._step()

    def health(self) -> Health:
        if self.failures:
            return Health(self.name, False, f"failing ({self.failures}x): {self.last_error}")
        return Health(self.name, True, f"{self.steps} steps")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._final_step:
            try:
                while await self._step():
                    pass
            except Exception as exc:  # left for the next start, which steps first
                log.warning("%s: last step at shutdown failed: %s", self.name, describe(exc))
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None

    async def _run(self) -> None:
        if self._first_after_s:
            await self._sleep(self._first_after_s)
        while True:
            delay = self._every_s
            try:
                more = await self._step()
            except Exception as exc:
                self.failures += 1
                self.last_error = describe(exc)
                delay = min(self._backoff_max_s, self._every_s * 2 ** min(self.failures, 16))
                log.warning(
                    "%s failed (%d in a row), again in %.1fs: %s",
                    self.name,
                    self.failures,
                    delay,
                    self.last_error,
                )
            else:
                self.steps += 1
                if self.failures:
                    log.info("%s works again after %d failures", self.name, self.failures)
                self.failures = 0
                self.last_error = None
                self.last_success = time.time()
                if more:
                    await asyncio.sleep(0)  # let others run between steps
                    continue
            await self._sleep(delay)
            if self._channel is not None and (self._listener is None or self._listener.is_closed()):
                await self._listen()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _listen(self) -> None:
        assert self._channel is not None and self._dsn is not None
        try:
            self._listener = await asyncpg.connect(self._dsn)
            await self._listener.add_listener(self._channel, self._notified)
            # A lost connection wakes the loop, which steps (a notification may have been
            # missed) and listens again.
            self._listener.add_termination_listener(self._notified)
        except Exception as exc:  # polling still does the work, only later
            log.warning(
                "%s: LISTEN %s unavailable, polling: %s", self.name, self._channel, describe(exc)
            )
            self._listener = None

    def _notified(self, *_: Any) -> None:
        self._wake.set()
