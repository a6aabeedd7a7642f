"""The processes `engram dev` runs in one event loop, and their log lines: FastStream apps
stopped all at once, and logs kept off the live view."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from faststream import FastStream


class RunningApps:
    """FastStream apps run inside this event loop, stopped all at once: a stop then waits
    for the slowest worker's idle pull (``fetch_wait_s``), not for the sum of them."""

    def __init__(self, lifespans: AsyncExitStack) -> None:
        self._lifespans = lifespans
        self._started: list[FastStream] = []

    async def start(self, app: FastStream) -> None:
        await self._lifespans.enter_async_context(app.lifespan_context())
        await app.start()
        self._started.append(app)

    async def stop(self) -> None:
        started, self._started = self._started, []
        quiet_faststream()  # its broker loggers are made (at INFO) when the apps start
        await asyncio.gather(*(app.stop() for app in started))


@asynccontextmanager
async def running_apps() -> AsyncIterator[RunningApps]:
    async with AsyncExitStack() as lifespans:  # closed after the apps stopped
        apps = RunningApps(lifespans)
        try:
            yield apps
        finally:
            await apps.stop()


@contextlib.contextmanager
def logs_to_file(path: Path) -> Iterator[None]:
    """While the live view is drawn, log lines go to ``path``: one written to the terminal
    under it would shift the page, and each redraw would leave a copy above."""
    path.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(path)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    names = [""] + [n for n in logging.root.manager.loggerDict if n.startswith("faststream")]
    kept = {name: logging.getLogger(name).handlers[:] for name in names}
    for name in names:
        logging.getLogger(name).handlers = [to_file]
    try:
        yield
    finally:
        for name, handlers in kept.items():
            logging.getLogger(name).handlers = handlers
        to_file.close()


def quiet_faststream() -> None:
    """FastStream's INFO lines ("waiting for messages", "callback for Task-47 is being
    executed...") say nothing to a person and would scroll through the live view."""
    logging.getLogger("faststream").setLevel(logging.WARNING)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("faststream"):
            logging.getLogger(name).setLevel(logging.WARNING)
