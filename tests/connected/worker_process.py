"""A worker as a real process for the failure tests: `engram run <service>` started,
signalled, killed and restarted as a supervisor would, its output kept in one log file
across its runs, polling that fails at once should the worker exit by itself, and what
its consumer's clients told JetStream, read off the wire."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

T = TypeVar("T")
ENGRAM = Path(sys.executable).parent / "engram"

_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child, before exec: SIGKILL it should pytest die without running its finally."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(service: str, env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """`engram run <service>` with ``env``, its output into ``log``, in a session of its
    own (a Ctrl-C of the test's terminal does not reach it), killed should pytest die."""
    return subprocess.Popen(
        [str(ENGRAM), "run", service],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - one libc call, no locks
    )


class WorkerProcess:
    """`engram run <service>` as a child process with ``env`` (NATS_URL, DATABASE_URL, its
    settings) over the test's environment; all its runs append to one log file."""

    def __init__(self, service: str, env: dict[str, str], log_path: Path) -> None:
        self.service = service
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log_from = 0

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        self._log_from = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start #{self.starts} at {time.monotonic():.3f} =====\n".encode())
            log.flush()
            self.proc = spawn(self.service, self.env, log)

    async def terminate(self, within_s: float) -> tuple[int, float]:
        """SIGTERM, as a supervisor sends it; the exit code and how long the exit took
        (killed, and failing, when it takes longer than ``within_s``)."""
        assert self.proc is not None
        sent = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(self.proc.wait, within_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.service} still running {within_s:.0f}s after SIGTERM"
            ) from None
        return code, time.monotonic() - sent

    def kill(self) -> None:
        """SIGKILL: no drain, no acks, nothing rolled back by the worker itself."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.service} exited by itself (code {self.proc.returncode})")

    def this_run_log(self) -> str:
        """What the current (or last) run wrote."""
        return self.log_path.read_bytes()[self._log_from :].decode(errors="replace")

    def log_tail(self, chars: int = 20_000) -> str:
        if not self.log_path.exists():
            return "<no worker output>"
        return self.log_path.read_text(errors="replace")[-chars:]


async def wait_for(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    *,
    worker: WorkerProcess,
    within_s: float,
    what: str,
    interval_s: float = 0.02,
) -> T:
    """Poll ``probe`` until ``until(value)``; fail at once if the worker died on its own."""
    deadline = time.monotonic() + within_s
    value = await probe()
    while not until(value):
        worker.check_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {within_s}s; last value {value!r}")
        await asyncio.sleep(interval_s)
        value = await probe()
    return value


async def unacked(js: JetStreamContext, consumer: str) -> tuple[int, int]:
    """(num_pending, num_ack_pending) of a consumer of CHAT; (-1, -1) before it exists
    (its first worker has not created it yet)."""
    try:
        info = await js.consumer_info("CHAT", consumer)
    except NotFoundError:
        return -1, -1
    return info.num_pending, info.num_ack_pending


@dataclass
class AckTally:
    """What a consumer's clients told JetStream about its messages, as seen on the wire:
    each ack subject (``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...``) carries
    the delivery it answers."""

    kinds: Counter[str] = field(default_factory=Counter)
    deliveries: dict[int, int] = field(default_factory=dict)  # stream seq -> most seen
    acks: Counter[int] = field(default_factory=Counter)  # stream seq -> +ACKs
    progress: Counter[int] = field(default_factory=Counter)  # stream seq -> +WPIs
    acked_at: dict[int, float] = field(default_factory=dict)  # stream seq -> monotonic

    async def listen(self, nc: NatsClient, stream: str, consumer: str) -> None:
        await nc.subscribe(f"$JS.ACK.{stream}.{consumer}.>", cb=self._seen)
        await nc.flush()

    async def _seen(self, msg: Msg) -> None:
        meta = Msg.Metadata._from_reply(msg.subject)
        seq = meta.sequence.stream
        # nats-py acks with an empty body (JetStream reads it as +ACK).
        kind = {b"": "ack", b"+ACK": "ack", b"+WPI": "progress", b"+TERM": "term"}.get(
            msg.data, "other"
        )
        if msg.data.startswith(b"-NAK"):
            kind = "nak"
        self.kinds[kind] += 1
        self.deliveries[seq] = max(self.deliveries.get(seq, 0), meta.num_delivered)
        if kind == "ack":
            self.acks[seq] += 1
            self.acked_at.setdefault(seq, time.monotonic())
        elif kind == "progress":
            self.progress[seq] += 1

    def snapshot(self) -> Counter[str]:
        return Counter(self.kinds)
