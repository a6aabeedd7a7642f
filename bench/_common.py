"""The benches' shared harness: the code measured (git state, snapshot, tree hash), the
embedded servers (start-up, databases, streams, worker processes), CPU and machine load,
percentiles, and writing results.

A bench run as a script (``python bench/x.py``) puts the repository root on ``sys.path``
itself before importing this module; nothing here imports ``services`` at import time, so
a snapshot on PYTHONPATH (see ``reexec_on_snapshot``) is what the bench measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
# The code measured: by default a snapshot of these folders taken at start (see
# reexec_on_snapshot), so edits landing in the working tree during a run do not mix versions.
CODE_DIRS = ("services", "contracts", "sql")
SNAPSHOT_ENV = "ENGRAM_BENCH_CODE"
SNAPSHOT_PREFIX = "engram-bench-code-"


# --- the code measured -------------------------------------------------------------------


def git_state() -> dict[str, Any]:
    """The commit, and whether services/, contracts/ or sql/ had uncommitted changes."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = git("status", "--porcelain", "--", *CODE_DIRS)
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_changes": bool(dirty)}


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for folder in CODE_DIRS:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".sql"):
                digest.update(str(path.relative_to(root)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def code_version(tree: Path) -> dict[str, Any]:
    """The git state (taken before the snapshot when there is one) and the hash of
    ``tree``'s services/, contracts/ and sql/."""
    if os.environ.get(SNAPSHOT_ENV):
        info = json.loads(os.environ.get(f"{SNAPSHOT_ENV}_GIT", "{}"))
        return {**info, "snapshot": True, "tree_sha": tree_hash(tree)}
    return {**git_state(), "snapshot": False, "tree_sha": tree_hash(tree)}


def reexec_on_snapshot(script: str, argv: list[str]) -> None:
    """Copy services/, contracts/ and sql/ aside and run ``script`` (the bench) and its
    workers on the copy, through PYTHONPATH, so edits landing during a run do not mix
    versions. Does not return."""
    info = git_state()
    snapshot = Path(tempfile.mkdtemp(prefix=SNAPSHOT_PREFIX))
    snapshot.chmod(0o755)
    for folder in CODE_DIRS:
        shutil.copytree(
            ROOT / folder, snapshot / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    pythonpath = os.pathsep.join(p for p in (str(snapshot), os.environ.get("PYTHONPATH")) if p)
    env = {
        **os.environ,
        SNAPSHOT_ENV: str(snapshot),
        f"{SNAPSHOT_ENV}_GIT": json.dumps(info),
        "PYTHONPATH": pythonpath,
    }
    os.execve(sys.executable, [sys.executable, str(Path(script).resolve()), *argv], env)


def imported_code(console: Console) -> Path | None:
    """Where ``services`` was imported from; None (after saying so) when the bench runs on
    a snapshot but imported the code from elsewhere."""
    import services

    snapshot = os.environ.get(SNAPSHOT_ENV)
    where = Path(services.__file__).resolve().parents[1]
    if snapshot and where != Path(snapshot).resolve():
        console.print(f"[red]services imported from {where}, not from the snapshot {snapshot}")
        return None
    return where


# --- servers, databases, streams, processes ----------------------------------------------


def admin_url(database_url: str) -> str:
    """The superuser's URL of the embedded PostgreSQL's ``postgres`` database."""
    return database_url.rsplit("/", 1)[0] + "/postgres"


class Postgres:
    """Databases of the embedded PostgreSQL, through the superuser's ``admin_url``."""

    admin_url: str

    def url(self, db: str) -> str:
        return self.admin_url.rsplit("/", 1)[0] + f"/{db}"

    async def admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def exists(self, db: str) -> bool:
        conn = await asyncpg.connect(self.admin_url)
        try:
            return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", db))
        finally:
            await conn.close()


async def fresh_streams(js: JetStreamContext) -> None:
    """Every engram stream deleted and created again, empty, and the dead-letter body
    bucket: the bus setup, which only the admin may do (``js`` must be the admin's)."""
    from services.runtime.bus import STREAMS, ensure_streams
    from services.runtime.dlq import ensure_body_store

    await ensure_body_store(js)
    for stream in STREAMS:
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream.name)
    for attempt in range(5):
        try:
            await ensure_streams(js)
            break
        except APIError:
            # Re-creating a just-deleted stream can race the server's cleanup of its
            # storage (10049/10077), as in tests/conftest.py: wait and try again.
            if attempt == 4:
                raise
            await asyncio.sleep(0.2)


def worker_login(database_url: str, service: str) -> str:
    """The DATABASE_URL a worker of ``service`` logs in with: its own role
    ``engram_<service>`` (no superuser, no BYPASSRLS: a worker refuses those). The
    embedded PostgreSQL trusts loopback logins, so no password."""
    from services.runtime.db import Roles, login_url

    return login_url(database_url, Roles(service).worker)


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Servers:
    """The embedded nats-server and PostgreSQL of one bench run."""

    urls: dict[str, str]  # NATS_URL: the NATS admin's; DATABASE_URL: the superuser's
    logs: Path  # <data dir>/bench-logs: the workers' logs
    pids: dict[str, int]  # postgres (the postmaster), nats
    # NATS URL of each user: every service of the catalog (its worker's own user),
    # "admin" (sets the bus up: the benches' own clients) and "producer"
    nats_users: dict[str, str] = field(default_factory=dict)

    @property
    def admin_url(self) -> str:
        return admin_url(self.urls["DATABASE_URL"])


@contextlib.contextmanager
def embedded_servers(data_dir: Path | None, prefix: str, console: Console) -> Iterator[Servers]:
    """Starts the embedded nats-server and PostgreSQL (DevStack) in ``data_dir``, or in a
    temporary folder (``prefix``) removed after; stops them after, and removes the code
    snapshot the bench ran on (if any)."""
    from services.catalog import SERVICES
    from services.runtime.embedded import DevStack

    temp = None
    if data_dir is None:
        temp = Path(tempfile.mkdtemp(prefix=prefix))
        os.chmod(temp, 0o755)  # the embedded PostgreSQL runs as its own user under root
    data_dir = data_dir or temp
    assert data_dir is not None
    logs = data_dir / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    console.log(f"starting embedded nats-server + PostgreSQL in {data_dir}")
    # With the catalog, each service has its own NATS user, as under `engram dev`.
    stack = DevStack(data_dir, SERVICES)
    snapshot = os.environ.get(SNAPSHOT_ENV)
    try:
        urls = stack.start()
        console.log(
            f"NATS {urls['NATS_URL']}  PostgreSQL {urls['DATABASE_URL']}; worker logs in {logs}"
        )
        pidfile = stack.postgres.pgdata / "postmaster.pid"
        assert stack.nats.process is not None
        pids = {"postgres": int(pidfile.read_text().split()[0]), "nats": stack.nats.process.pid}
        users = {user: stack.nats_url(user) for user in stack.passwords}
        yield Servers(urls, logs, pids, users)
    finally:
        stack.stop()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        if snapshot and Path(snapshot).name.startswith(SNAPSHOT_PREFIX):
            shutil.rmtree(snapshot, ignore_errors=True)


# --- CPU and machine load ----------------------------------------------------------------


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return 0, 0
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def cpu_seconds(procs: Sequence[psutil.Process]) -> float:
    """User + system CPU seconds of ``procs`` (those gone are skipped)."""
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


class CpuMeter:
    """CPU seconds of our processes (the workers with their children, PostgreSQL, the
    nats-server, this bench) over a window, and the cores the whole machine was busy: the
    rest is other sessions' load. Processes born during the window (a new PostgreSQL
    backend) count whole; those that ended during it are missed. ``start`` opens the
    window, ``measure`` reads it; each bench reports the figures its own way."""

    def __init__(self, pids: dict[str, int], workers: dict[str, subprocess.Popen[bytes]]) -> None:
        self.pids, self.workers = pids, workers

    def _groups(self) -> dict[str, list[psutil.Process]]:
        groups: dict[str, list[psutil.Process]] = {}
        with contextlib.suppress(psutil.Error):
            for name, w in self.workers.items():
                p = psutil.Process(w.pid)
                groups[name] = [p, *p.children(recursive=True)]
            pg = psutil.Process(self.pids["postgres"])
            groups["postgres"] = [pg, *pg.children(recursive=True)]
            groups["nats"] = [psutil.Process(self.pids["nats"])]
            groups["bench"] = [psutil.Process()]
        return groups

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.cpu0 = {
            name: {p.pid: cpu_seconds([p]) for p in procs} for name, procs in self._groups().items()
        }
        self.m0 = machine_jiffies()

    def measure(self) -> tuple[float, dict[str, float], float | None]:
        """Wall seconds since ``start``, CPU seconds per group, and the cores the machine
        was busy (None when /proc/stat could not be read)."""
        wall = time.perf_counter() - self.t0
        m1 = machine_jiffies()
        used: dict[str, float] = {}
        for name, procs in self._groups().items():
            before = self.cpu0.get(name, {})
            used[name] = sum(cpu_seconds([p]) - before.get(p.pid, 0.0) for p in procs)
        busy, total = m1[0] - self.m0[0], m1[1] - self.m0[1]
        machine = (os.cpu_count() or 1) * busy / total if total > 0 else None
        return wall, used, machine


def loadavg() -> list[float]:
    with contextlib.suppress(OSError):
        return [round(x, 2) for x in os.getloadavg()]
    return []


# --- figures and results -----------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile by nearest rank (no interpolation); NaN of nothing."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile, linearly interpolated between ranks; NaN of nothing."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def write_report(path: Path, report: dict[str, Any]) -> None:
    """The results as indented JSON (anything else as its str), with a final newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
