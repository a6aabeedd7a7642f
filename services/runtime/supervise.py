"""A worker that can no longer work ends its process, so that its supervisor (docker,
Kubernetes) restarts it (DESIGN.md, rule 9: never silent).

Two things leave a worker alive but useless: nats-py closes its connection for good on
any ``-ERR`` from the server (a protocol or size violation) and after
``max_reconnect_attempts``, and a pull loop can end on a bug. Neither ends the process:
FastStream's app keeps running with nothing consuming, and a restart is what heals it.

``Supervisor.fail`` logs one critical line and asks the app to stop (a normal shutdown:
what can still be drained is drained), and ``run_worker`` then returns
``EXIT_CANNOT_WORK``. A process started by ``engram run`` is also ended hard
(``os._exit``) should that shutdown not finish within the grace period: a wedged loop must
not keep a dead worker up. Workers run in a test's or `engram dev`'s own process only stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable

from faststream import FastStream
from nats.aio.client import Client as NatsClient

from services.runtime.errors import describe

log = logging.getLogger("engram.supervise")

# EX_TEMPFAIL: a temporary failure; start the worker again.
EXIT_CANNOT_WORK = 75


class Supervisor:
    def __init__(self, name: str, *, grace_s: float) -> None:
        self.name = name
        self.grace_s = grace_s
        self.failure: str | None = None
        self.stopping = False  # a shutdown was asked for: what ends now is expected
        self.hard_exit = False  # set by the owner of the process (``run_worker``)
        self.nc: NatsClient | None = None  # the worker's connection, for its last error
        self._stop: Callable[[], None] | None = None

    def stops(self, stop: Callable[[], None]) -> None:
        """What to call to stop the worker gracefully (the app's ``exit``)."""
        self._stop = stop

    def fail(self, reason: str) -> None:
        """The worker cannot work any more: stop it, and end its process."""
        if self.stopping or self.failure is not None:
            return
        self.failure = reason
        log.critical(
            "%s cannot work any more: %s; stopping (exit code %d) so that it is restarted",
            self.name,
            reason,
            EXIT_CANNOT_WORK,
        )
        if self._stop is not None:
            self._stop()
        if self.hard_exit:
            # A thread, not the event loop: the loop may be what is stuck.
            timer = threading.Timer(self.grace_s, _hard_exit, args=(self.name, self.grace_s))
            timer.daemon = True
            timer.start()

    async def connection_closed(self) -> None:
        """nats-py's ``closed_cb``: called once the connection is closed for good."""
        error = self.nc.last_error if self.nc is not None else None
        why = f" ({describe(error)})" if error is not None else ""
        self.fail(f"its NATS connection was closed for good{why}")

    def watch(
        self, task: asyncio.Task[None], what: str, stopped: Callable[[], bool] = lambda: False
    ) -> None:
        """A task that must run until shutdown (or until ``stopped()``): an earlier end is
        a failure of the worker."""

        def ended(done: asyncio.Task[None]) -> None:
            if done.cancelled():
                reason = "was cancelled"
            elif (exc := done.exception()) is not None:
                reason = f"crashed: {describe(exc)}"
                log.error("%s crashed", what, exc_info=exc)
            else:
                reason = "ended"
            if not (self.stopping or stopped()):
                self.fail(f"{what} {reason}")

        task.add_done_callback(ended)


def _hard_exit(name: str, grace_s: float) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.write(
            f"{name}: shutdown did not finish within {grace_s:.0f}s of the failure; "
            f"exiting now ({EXIT_CANNOT_WORK})\n"
        )
        sys.stderr.flush()
        for handler in logging.getLogger().handlers:
            handler.flush()
    os._exit(EXIT_CANNOT_WORK)


def run_worker(app: FastStream, supervisor: Supervisor, log_level: int) -> int:
    """Run the app in this process until it is stopped; the process's exit code."""
    supervisor.hard_exit = True
    try:
        asyncio.run(app.run(log_level=log_level))
    except Exception:
        if supervisor.failure is None:
            raise
        # Shutting down on a connection that is gone fails too; it was reported already.
        log.debug("shutdown after the failure did not finish cleanly", exc_info=True)
    return EXIT_CANNOT_WORK if supervisor.failure is not None else 0
