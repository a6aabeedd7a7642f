"""`engram dev` as a person runs it: a 100x40 terminal (tmux), Ctrl-C, a closed terminal,
a kill -9, and a second start on the same folder. Real processes, real signals."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import nats
import psutil
import pytest

from services.runtime.devguard import stop_orphans
from tests import factories as f
from tests.connected.cli_run import ENGRAM
from tests.connected.dev_process import run_engram, servers_under, start_engram
from tests.helpers import dead_letters, publish, publish_raw

pytestmark = [pytest.mark.connected, pytest.mark.slow]
STARTED = "Ctrl-C stops everything."


def user_env(tmp_path: Path) -> dict[str, str]:
    """A home of its own: `engram dev` writes a pointer file in the user data dir."""
    home = tmp_path / "home"
    return {
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "ENGRAM_DATA_DIR": "",
    }


def wait_for(probe: Callable[[], bool], what: Callable[[], str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, what()
        time.sleep(0.3)


def alive(proc: psutil.Process) -> bool:
    """Running, not a zombie: an orphan's parent (init here) may not reap it at once."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def gone_wrong(data: Path, watchdogs: list[psutil.Process]) -> str:
    guard = data / "devguard.log"
    said = guard.read_text() if guard.exists() else ""
    states = [(w.pid, alive(w)) for w in watchdogs]
    files = [(p.pid, [f.path for f in p.open_files()]) for p in servers_under(data)]
    return f"still running: {files}; watchdog {states}; its log: {said!r}"


def nats_url(data: Path) -> str:
    lines = (data / "engram.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)["NATS_URL"]


class Terminal:
    """`engram dev` in a detached tmux window of 100x40, on a tmux server of its own."""

    def __init__(self, socket: str, command: list[str]) -> None:
        self.socket = socket
        self._tmux("new-session", "-d", "-s", "dev", "-x", "100", "-y", "40", shlex.join(command))

    def _tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True
        ).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "dev")

    def close(self) -> None:
        """As closing the terminal window does: the shell in it gets SIGHUP."""
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], check=False)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Callable[[list[str]], Terminal]]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    opened: list[Terminal] = []

    def open_terminal(args: list[str]) -> Terminal:
        env = [f"{k}={v}" for k, v in {**os.environ, **user_env(tmp_path)}.items()]
        env = [e for e in env if not e.startswith(("NATS_URL=", "DATABASE_URL="))]
        term = Terminal(f"engram-test-{uuid.uuid4().hex[:8]}", ["env", *env, ENGRAM, *args])
        opened.append(term)
        return term

    yield open_terminal
    for term in opened:
        term.close()


async def test_the_view_fits_100x40_and_says_what_happened_then_a_closed_terminal_stops_all(
    tmp_path: Path, terminal: Callable[[list[str]], Terminal]
) -> None:
    data = tmp_path / "data"
    term = terminal(["dev", "--data-dir", str(data), "-s", "ingest", "-s", "audit"])
    wait_for(lambda: "what the workers did" in term.screen(), term.screen)

    # A second start on the same folder, while the first runs: refused, in one line (the
    # test blocks on it on purpose).
    second = run_engram(
        "dev", "--data-dir", str(data), "-s", "ingest", env={**os.environ, **user_env(tmp_path)}
    )
    assert second.returncode != 0
    said = (second.stdout + second.stderr).strip().splitlines()
    assert len(said) == 1 and "another `engram dev`" in said[0] and str(data) in said[0], said
    assert len([p for p in servers_under(data) if p.info["name"] == "nats-server"]) == 1

    text = f"meet at the blue door {uuid.uuid4().hex[:6]}"
    nc = await nats.connect(nats_url(data))
    try:
        cid = uuid.uuid4()
        await publish(nc, f.conversation(cid), f.message(cid, content=text))
        await publish_raw(nc, "chat.message.created", b'{"not": "an event"}', str(uuid.uuid4()))
        [(_, headers, _)] = await dead_letters(nc)
    finally:
        await nc.close()
    reason = headers["Engram-Dlq-Reason"]

    def shows_both() -> bool:
        screen = term.screen()
        return text in screen and reason[:30] in screen

    wait_for(shows_both, term.screen, timeout=30)
    screen = term.screen().split("what the workers did")[1]
    assert "ingest.inbox" not in screen  # internal tables only with --verbose
    assert "ingest" in screen and "1 dead-lettered" in screen

    term.close()  # SIGHUP
    wait_for(lambda: not servers_under(data), lambda: str(servers_under(data)), timeout=30)


@pytest.mark.parametrize(
    ("sig", "workers"),
    [
        pytest.param(signal.SIGINT, [], id="ctrl-c-all-workers"),
        # audit reads four streams: the slowest worker to stop.
        pytest.param(signal.SIGTERM, ["-s", "ingest", "-s", "audit"], id="sigterm"),
    ],
)
def test_an_idle_stop_takes_5_s_at_most_without_asyncio_task_noise(
    tmp_path: Path, sig: signal.Signals, workers: list[str]
) -> None:
    data, log = tmp_path / "data", tmp_path / "dev.log"
    proc = start_engram("dev", "--data-dir", str(data), *workers, log=log)
    try:
        wait_for(lambda: STARTED in log.read_text(errors="replace"), log.read_text)
        time.sleep(3)  # idle: the pull requests are open
        began = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait(30)
        took = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    assert code == 0, output
    assert took <= 5.0, f"stop took {took:.1f} s"
    stopping = output.split("stopping:")[1]
    assert "Task" not in stopping and "callback" not in stopping, stopping
    assert servers_under(data) == []


def test_kill_9_of_engram_dev_leaves_no_server_running(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The watchdog stops them at once; if it was killed too, the next start does."""
    data, log = tmp_path / "data", tmp_path / "dev.log"
    started: list[subprocess.Popen[bytes]] = []

    def kill_started() -> None:
        for p in started:
            if p.poll() is None:
                p.kill()

    request.addfinalizer(lambda: stop_orphans(data.resolve()))  # last: finalizers run LIFO
    request.addfinalizer(kill_started)
    for round_ in (1, 2):
        proc = start_engram("dev", "--data-dir", str(data), "-s", "ingest", log=log)
        started.append(proc)
        wait_for(lambda: STARTED in log.read_text(errors="replace"), log.read_text)
        assert servers_under(data), "no servers to orphan"
        watchdogs = [
            p for p in psutil.Process(proc.pid).children() if "devguard" in " ".join(p.cmdline())
        ]
        assert len(watchdogs) == 1 and alive(watchdogs[0])
        if round_ == 2:  # the watchdog too, as `kill -9` of the whole process group would
            watchdogs[0].kill()  # no wait: a zombie until its parent goes, just below
        proc.kill()
        proc.wait(10)
        if round_ == 1:
            wait_for(
                lambda: not servers_under(data),
                lambda guards=watchdogs: gone_wrong(data, guards),  # type: ignore[misc]
                30,
            )
    # By the names read when listed: a postgres backend may end while we look.
    orphans = servers_under(data)
    assert {p.info["name"] for p in orphans} == {"nats-server", "postgres"}
    orphan_nats = [p for p in orphans if p.info["name"] == "nats-server"]
    proc = start_engram("dev", "--data-dir", str(data), "-s", "ingest", log=log)
    started.append(proc)
    try:
        wait_for(lambda: STARTED in log.read_text(errors="replace"), log.read_text)
        output = log.read_text()
        assert "stopped nats-server" in output and "left running by an earlier" in output
        assert not any(alive(p) for p in orphan_nats)
        assert len([p for p in servers_under(data) if p.info["name"] == "nats-server"]) == 1
        ports = json.loads(next((data / "nats").glob("*.ports")).read_text())
        assert ports["nats"], "the new nats-server serves"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, log.read_text()
    assert servers_under(data) == []
