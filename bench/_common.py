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
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
# The code measured: by default a snapshot of these folders taken at start (see
# reexec_on_snapshot), so edits landing in the working tree during a run do not mix versions.
# (client/contracts is copied to the snapshot's top level, where it imports as `contracts`.)
CODE_DIRS = ("services", "client/contracts", "sql")
SNAPSHOT_ENV = "ENGRAM_BENCH_CODE"
SNAPSHOT_PREFIX = "engram-bench-code-"


# --- the code measured -------------------------------------------------------------------


def git_state() -> dict[str, Any]:
    """The commit, and whether services/, client/contracts/ or sql/ had uncommitted changes."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = git("status", "--porcelain", "--", *CODE_DIRS)
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_changes": bool(dirty)}


def code_dir(root: Path, folder: str) -> Path:
    """``folder`` of CODE_DIRS under ``root``: in the checkout, or at the top of a snapshot."""
    here = root / folder
    return here if here.is_dir() else root / Path(folder).name


def tree_hash(root: Path) -> str:
    """The same for a checkout and its snapshot (paths are hashed as in the snapshot)."""
    digest = hashlib.sha256()
    for folder in CODE_DIRS:
        top = code_dir(root, folder)
        for path in sorted(top.rglob("*")):
            if path.is_file() and path.suffix in (".py", ".sql"):
                digest.update(str(Path(top.name) / path.relative_to(top)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def code_version(tree: Path) -> dict[str, Any]:
    """The git state (taken before the snapshot when there is one) and the hash of
    ``tree``'s services/, client/contracts/ and sql/."""
    if os.environ.get(SNAPSHOT_ENV):
        info = json.loads(os.environ.get(f"{SNAPSHOT_ENV}_GIT", "{}"))
        return {**info, "snapshot": True, "tree_sha": tree_hash(tree)}
    return {**git_state(), "snapshot": False, "tree_sha": tree_hash(tree)}


def reexec_on_snapshot(script: str, argv: list[str]) -> None:
    """Copy services/, client/contracts/ and sql/ aside and run ``script`` (the bench) and its
    workers on the copy, through PYTHONPATH, so edits landing during a run do not mix
    versions. Does not return."""
    info = git_state()
    snapshot = Path(tempfile.mkdtemp(prefix=SNAPSHOT_PREFIX))
    snapshot.chmod(0o755)
    for folder in CODE_DIRS:
        shutil.copytree(
            ROOT / folder,
            snapshot / Path(folder).name,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
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


async def fresh_database(admin: str, name: str, template: str | None = None) -> str:
    """Database ``name`` made anew on the server of ``admin`` (dropped first, by force;
    a copy of ``template`` if given); its URL."""
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        copy = f" TEMPLATE {template}" if template else ""
        await conn.execute(f"CREATE DATABASE {name}{copy}")
    finally:
        await conn.close()
    return admin.rsplit("/", 1)[0] + f"/{name}"


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

    async def migrated_template(self, name: str, services: Sequence[str]) -> str:
        """A database ``name`` (made again) migrated for ``services``, to ``clone``."""
        from services.catalog import migrate

        await self.drop(name)
        await self.admin(f"CREATE DATABASE {name}")
        await migrate(self.url(name), list(services))
        return self.url(name)

    async def clone(self, name: str, template: str) -> str:
        """A fresh database ``name``, a copy of ``template`` (as tests/conftest.py does)."""
        await self.drop(name)
        await self.admin(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.url(name)

    async def drop(self, name: str) -> None:
        await self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    async def checkpoint(self) -> None:
        # Start each timed phase with no dirty buffers left over from the one before.
        await self.admin("CHECKPOINT")


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


def engram_cmd(service: str = "ingest") -> list[str]:
    """``engram run <service>``: a worker as in production, in its own process."""
    return [str(Path(sys.executable).parent / "engram"), "run", service]


def start_process(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``args`` in a session of its own (a ^C to the bench does not reach it) with
    ``env`` over ours, its output appended to ``log_path``."""
    log = log_path.open("ab")
    try:
        return subprocess.Popen(
            args,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
    finally:
        log.close()


async def consumer_info(js: JetStreamContext, durable: str, stream: str = "CHAT") -> Any:
    """The durable's info, or None while it does not exist."""
    try:
        return await js.consumer_info(stream, durable)
    except NotFoundError:
        return None


async def wait_consumer(
    js: JetStreamContext, durable: str, proc: subprocess.Popen[bytes], limit_s: float = 60.0
) -> None:
    """Until the worker ``proc`` has created its durable on CHAT: it is ready to pull."""
    deadline = time.perf_counter() + limit_s
    while await consumer_info(js, durable) is None:
        if proc.poll() is not None:
            raise RuntimeError(f"{durable} process exited with {proc.returncode}; see its log")
        if time.perf_counter() > deadline:
            raise TimeoutError(f"consumer {durable} did not appear in {limit_s}s")
        await asyncio.sleep(0.005)


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

    def stop(self, events: int) -> dict[str, float]:
        """The window read as figures: wall seconds, cores and CPU µs per event of each
        group, the machine's busy cores and other sessions' share of them."""
        wall, used, machine = self.measure()
        out: dict[str, float] = {"wall_s": wall}
        for name, cpu in used.items():
            out[f"{name}_cores"] = cpu / wall
            out[f"{name}_us_per_event"] = 1e6 * cpu / max(events, 1)
        if machine is not None:
            out["machine_cores_busy"] = machine
            out["others_cores"] = max(0.0, machine - sum(used.values()) / wall)
        return out


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


# --- publish -> applied latency ----------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """One message of a steady publish."""

    subject: str
    data: bytes | Callable[[], bytes]  # a callable is serialized when it is sent
    headers: dict[str, str] | None
    key: uuid.UUID | None = None  # what the poll query returns once it is applied
    timed: bool = True  # its latency is recorded (not a warm-up or a bad event)


@dataclass
class Timings:
    """What a steady publish saw, by index in the sequence published."""

    seqs: list[int]  # the stream sequence of each (from its publish ack)
    by_poll: dict[int, float]  # seconds from the publish call to the first poll seeing it
    by_ack: dict[int, float]  # seconds from the publish call to the worker's first +ACK
    achieved_rate: float
    unseen: int  # keyed messages the poll had not seen when it gave up


def ack_stream_seq(subject: str, stream: str, durable: str) -> int | None:
    """The stream sequence an ack on ``$JS.ACK.>`` is about, if it is ``durable``'s."""
    # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>
    # (or the v2 form with domain and account hash before <stream>)
    tokens = subject.split(".")
    for i in range(2, len(tokens) - 3):
        if tokens[i] == stream and tokens[i + 1] == durable:
            return int(tokens[i + 3])
    return None


async def steady_publish(  # noqa: PLR0915 - one publish loop with its poller and acks
    admin: NatsClient,
    js: JetStreamContext,
    db: asyncpg.Connection,
    items: Sequence[Outgoing],
    *,
    rate: float,
    poll_sql: str,
    settle_s: float = 60.0,
    progress: Callable[[int], None] | None = None,
    settled: Callable[[], None] | None = None,
    durable: tuple[str, str] = ("CHAT", "ingest"),
) -> Timings:
    """Publish ``items`` at ``rate``/s through ``js`` and time each one until applied.

    A poller runs ``poll_sql`` (every ~2 ms, ``$1`` the keys still outstanding; it returns
    the keys applied) on ``db``: latency = start of the first poll that sees the key - the
    publish call. Resolution ~2-3 ms; it adds work to PostgreSQL only. The worker's acks
    (sent right after COMMIT), seen on ``$JS.ACK.>`` by ``admin`` (the NATS admin), give a
    second timing with no polling. Returns once every key was seen (or after ``settle_s``);
    ``settled`` is called then, before a short wait for the last acks.
    """
    outstanding: dict[uuid.UUID, int] = {}
    sent_at: list[float] = [0.0] * len(items)
    by_poll: dict[int, float] = {}
    acked: dict[int, float] = {}
    done = asyncio.Event()

    async def on_ack(msg: Msg) -> None:
        at = time.perf_counter()
        if msg.data and not msg.data.startswith(b"+ACK"):
            return  # in progress, nak, term
        seq = ack_stream_seq(msg.subject, *durable)
        if seq is not None:
            acked.setdefault(seq, at)

    async def poller() -> None:
        while not (done.is_set() and not outstanding):
            if outstanding:
                t = time.perf_counter()
                for row in await db.fetch(poll_sql, list(outstanding)):
                    i = outstanding.pop(row[0], None)
                    if i is not None and items[i].timed:
                        by_poll[i] = t - sent_at[i]
            await asyncio.sleep(0.002)

    ack_sub = await admin.subscribe("$JS.ACK.>", cb=on_ack)
    poll_task = asyncio.create_task(poller())
    futures: list[asyncio.Future[Any]] = []
    try:
        started, i = time.perf_counter(), 0
        while i < len(items):
            due = min(len(items), int((time.perf_counter() - started) * rate) + 1)
            while i < due:
                item = items[i]
                data = item.data if isinstance(item.data, bytes) else item.data()
                sent_at[i] = time.perf_counter()
                if item.key is not None:
                    outstanding[item.key] = i
                futures.append(await js.publish_async(item.subject, data, headers=item.headers))
                i += 1
            if progress is not None:
                progress(i)
            await asyncio.sleep(0.001)
        achieved = len(items) / (time.perf_counter() - started)
        await js.publish_async_completed()
        seqs = [int(f.result().seq) for f in futures]
        done.set()
        deadline = time.perf_counter() + settle_s
        while outstanding and time.perf_counter() < deadline:  # noqa: ASYNC110 - polling
            await asyncio.sleep(0.01)
        unseen = len(outstanding)
        if settled is not None:
            settled()
        await asyncio.sleep(0.2)  # the last acks
    finally:
        done.set()
        outstanding.clear()
        await poll_task
        await ack_sub.unsubscribe()
    by_ack = {
        i: acked[seq] - sent_at[i] for i, seq in enumerate(seqs) if items[i].timed and seq in acked
    }
    return Timings(seqs, by_poll, by_ack, achieved, unseen)
