"""The embedded servers live only as long as the process that started them.

Two guards, because nats-server and PostgreSQL run in sessions of their own (pg_ctl
detaches the postmaster, and nats-server must not take the terminal's Ctrl-C before the
workers have drained), so neither dies with its parent by itself:

- ``DataDirLock``: an ``flock`` on ``dev.lock`` of the data folder, held while a stack
  runs. The kernel drops it whatever ends the holder (SIGKILL included), so a second
  start on the folder is refused while the first runs, and a start that gets the lock
  knows that any server still running on the folder is an orphan (``stop_orphans``).
- A watchdog process (this file run as a script, ``devguard.py <folder>``) that reads a
  pipe whose only writer is the stack's owner: end of file means the owner is gone, by
  any signal, and the watchdog stops the folder's servers. Standard library only, so it
  starts in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

LOCK_FILE = "dev.lock"
NATS_PIDFILE = Path("nats") / "nats.pid"
POSTMASTER_PIDFILE = Path("postgres") / "pgdata" / "postmaster.pid"


STOOD_DOWN = b"servers stopped"  # what the owner writes to the pipe after a clean stop
OWNER_EXIT_S = 10.0


class DataDirInUse(RuntimeError):
    """Another process runs the embedded servers of this data folder."""


@dataclass
class DataDirLock:
    data_dir: Path
    _fd: int | None = field(default=None, repr=False)

    @property
    def path(self) -> Path:
        return self.data_dir / LOCK_FILE

    def acquire(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DataDirInUse(
                f"another `engram dev` (pid {holder}) is running on {self.data_dir}: "
                "stop it first, or give this one another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def refuse_if_in_use(data_dir: Path) -> None:
    """Raise ``DataDirInUse`` if a stack runs on ``data_dir`` now (a check, not a hold)."""
    if not (data_dir / LOCK_FILE).exists():
        return
    probe = DataDirLock(data_dir)
    probe.acquire()
    probe.release()


def _pid_of(pidfile: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(pidfile.read_text().split()[0])
    return None


def _runs_on(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is a server of this folder (not a later process that got its pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return str(data_dir) in cmdline


def _stop(pid: int, sig: signal.Signals, data_dir: Path, timeout_s: float) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout_s
    while _runs_on(pid, data_dir) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaps it when it is our own child
        time.sleep(0.05)
    if _runs_on(pid, data_dir):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def stop_orphans(data_dir: Path) -> list[str]:
    """Stop the folder's nats-server and PostgreSQL; call it only with the folder's lock
    held (or when its holder is gone). Returns what it stopped, in words."""
    stopped = []
    nats = _pid_of(data_dir / NATS_PIDFILE)
    if nats is not None and _runs_on(nats, data_dir):
        _stop(nats, signal.SIGTERM, data_dir, timeout_s=5)
        stopped.append(f"nats-server (pid {nats})")
    postmaster = _pid_of(data_dir / POSTMASTER_PIDFILE)
    if postmaster is not None and _runs_on(postmaster, data_dir):
        # SIGINT is PostgreSQL's fast shutdown: clients cut off, data consistent.
        _stop(postmaster, signal.SIGINT, data_dir, timeout_s=20)
        stopped.append(f"postgres (pid {postmaster})")
    return stopped


@dataclass
class Watchdog:
    """The child that stops the folder's servers once this process is gone."""

    data_dir: Path
    _write_end: int | None = field(default=None, repr=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        read_end, self._write_end = os.pipe()  # both non-inheritable by other children
        try:
            self._process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), str(self.data_dir)],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=(self.data_dir / "devguard.log").open("ab"),
                # Away from the terminal's Ctrl-C and hang-up: it must outlive us.
                start_new_session=True,
            )
        finally:
            os.close(read_end)

    def stop(self) -> None:
        """The servers are stopped: let the watchdog go without looking for them."""
        if self._write_end is not None:
            with contextlib.suppress(OSError):
                os.write(self._write_end, STOOD_DOWN)
            os.close(self._write_end)
            self._write_end = None
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(5)
            self._process = None


def main(argv: list[str]) -> None:
    data_dir = Path(argv[0])
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # only the pipe ends its watch
    said = b""
    while chunk := os.read(0, 1024):
        said += chunk
    if STOOD_DOWN in said:  # its owner stopped the servers itself
        return
    # Its owner is gone. The kernel drops the owner's lock as it closes the pipe, not
    # always before: wait for it. Whoever holds it after that (a new start) owns the servers.
    lock = DataDirLock(data_dir)
    deadline = time.monotonic() + OWNER_EXIT_S
    while True:
        try:
            lock.acquire()
            break
        except DataDirInUse as exc:
            if time.monotonic() > deadline:
                print(f"{time.strftime('%F %T')} not stopping anything: {exc}", file=sys.stderr)
                return
            time.sleep(0.05)
    try:
        for what in stop_orphans(data_dir):
            stamp = time.strftime("%F %T")
            print(f"{stamp} stopped {what}: the process that started it is gone", file=sys.stderr)
    finally:
        lock.release()


if __name__ == "__main__":
    main(sys.argv[1:])
