"""`engram` as a blocking child process, for the tests of `engram dev` and `engram run`
that start it, wait for a line of its output, signal it and look for the servers it left:
its output goes to a log file the test reads (cli_run.py runs a command to its end from
async tests)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import psutil

from tests.connected.cli_run import ENGRAM, without_urls


def start_engram(
    *args: str, env: Mapping[str, str] | None = None, log: Path
) -> subprocess.Popen[bytes]:
    """`engram <args>` in the background, with the test's environment less the operator's
    URLs, plus ``env``; stdout and stderr into ``log``."""
    return subprocess.Popen(
        [ENGRAM, *args],
        env={**without_urls(), **(env or {})},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def run_engram(
    *args: str, env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`engram <args>` to its end with exactly ``env``; its exit code and output."""
    return subprocess.run(
        [ENGRAM, *args], env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )


def wait_for_output(
    proc: subprocess.Popen[bytes], log: Path, line: str, within_s: float = 90
) -> None:
    """Until ``line`` shows in ``log``; fails with the log if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + within_s
    while line not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)


def servers_under(folder: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(folder) in cmdline and proc.info["name"] in ("nats-server", "postgres"):
            found.append(proc)
    return found


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT, timeout: float = 60) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
