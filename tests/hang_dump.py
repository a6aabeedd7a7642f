"""What a test was waiting on when it hangs: shortly before pytest-timeout ends a test, its
pending asyncio tasks and every thread's stack are printed to stderr. pytest-timeout's own
dump shows only threads, and an awaiting test shows nothing there but the event loop's
``select``; the tasks show the await that never returned."""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import sys
import threading
from collections.abc import Iterator

import pytest

# How long before pytest-timeout's limit (the test's mark, or pyproject.toml's) the dump
# comes.
DUMP_BEFORE_TIMEOUT_S = 30.0


def dump_pending_tasks(nodeid: str, after_s: float) -> None:
    out = sys.stderr
    print(f"\n=== {nodeid}: still running after {after_s:.0f} s ===", file=out)
    # Another thread's loop cannot be asked for its tasks safely; the tasks are read as
    # objects, for a diagnosis only.
    tasks = [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()]
    for task in tasks:
        print(f"--- task {task.get_name()}: {task.get_coro()!r}", file=out)
        task.print_stack(limit=12, file=out)
    print("=== threads ===", file=out)
    faulthandler.dump_traceback(file=out, all_threads=True)
    out.flush()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    marker = item.get_closest_marker("timeout")
    limit = float(marker.args[0] if marker and marker.args else item.config.getini("timeout") or 0)
    if limit <= DUMP_BEFORE_TIMEOUT_S:
        yield
        return
    after_s = limit - DUMP_BEFORE_TIMEOUT_S
    timer = threading.Timer(after_s, dump_pending_tasks, args=(item.nodeid, after_s))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
