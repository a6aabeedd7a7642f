"""Every `engram` command fails with one line on stderr and a non-zero exit; the
traceback only with ``--debug`` (anywhere on the command line).

Commands say what to fix themselves where they know (``cli_env.fail``, ``Unreachable``);
this is the net under all of them, the commands services add included: whatever escapes
a command is described in one line here.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Callable

import asyncpg
import nats.errors
import pydantic
from nats.js.errors import APIError

from services.runtime.cli_connect import Unreachable
from services.runtime.cli_env import Mode
from services.runtime.errors import describe

DEBUG_FLAG = "--debug"
# Exit codes: 2 when the environment is wrong (as `fail`), 1 for anything unexpected.
EXIT_ENVIRONMENT = 2
EXIT_UNEXPECTED = 1
# Commands that run workers: their NATS client's own log lines are the workers' log.
WORKER_COMMANDS = frozenset({"run", "dev"})


def explain(exc: BaseException) -> tuple[str, int]:  # noqa: PLR0911 (one line per kind)
    """One line for ``exc``, and the exit code."""
    if isinstance(exc, Unreachable):
        return str(exc), EXIT_ENVIRONMENT
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return f"PostgreSQL: {exc} (check the database name of DATABASE_URL)", EXIT_ENVIRONMENT
    if isinstance(
        exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
    ):
        return f"PostgreSQL refused the login: {exc} (check DATABASE_URL)", EXIT_ENVIRONMENT
    if isinstance(exc, asyncpg.PostgresError):
        return f"PostgreSQL: {describe(exc)}", EXIT_ENVIRONMENT
    if isinstance(exc, APIError):
        return f"NATS JetStream refused: {exc.description or exc}", EXIT_ENVIRONMENT
    if isinstance(exc, nats.errors.NoServersError | nats.errors.ConnectionClosedError):
        return "cannot reach NATS (check NATS_URL)", EXIT_ENVIRONMENT
    if isinstance(exc, nats.errors.Error):
        return f"NATS: {describe(exc)} (check NATS_URL)", EXIT_ENVIRONMENT
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return f"cannot reach a server: {describe(exc)}", EXIT_ENVIRONMENT
    if isinstance(exc, OSError):  # a file, a folder, a model not found
        return describe(exc), EXIT_ENVIRONMENT
    if isinstance(exc, pydantic.ValidationError):
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        return f"invalid setting or argument: {problems}", EXIT_ENVIRONMENT
    return f"{describe(exc)} (`--debug` shows the traceback)", EXIT_UNEXPECTED


def run_guarded(command: Callable[[], object], argv: list[str]) -> None:
    """Run the CLI (``command``, reading ``argv``) with the net; ``argv`` loses --debug."""
    debug = DEBUG_FLAG in argv[1:]
    if debug:
        argv.remove(DEBUG_FLAG)
        Mode.debug = True
    words = [a for a in argv[1:] if not a.startswith("-")]
    if not debug and not (words and words[0] in WORKER_COMMANDS):
        # nats-py logs a traceback for every failed attempt; the one line below says it.
        logging.getLogger("nats").setLevel(logging.CRITICAL)
    try:
        command()
    except Exception as exc:
        if debug:
            raise
        line, code = explain(exc)
        sys.stderr.write(f"error: {' '.join(line.split())}\n")
        sys.exit(code)
