"""A real three-node JetStream cluster for one test: the nats-server binary the embedded
stack runs, each node with its own client port, cluster port, store and ``server_name``,
routes to the two others, and the authorization block engram generates (the same users
and passwords as the session's server)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.runtime import nats_auth
from services.runtime.embedded_nats import nats_server_binary, stop_server

CLUSTER_NAME = "engram-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    root: Path
    port: int = field(default_factory=_free_port)
    cluster_port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def write_config(self, routes: list[int], authorization: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "nats.conf"
        conf.touch(mode=0o600)  # it holds passwords
        listed = ", ".join(f'"nats-route://127.0.0.1:{port}"' for port in routes)
        conf.write_text(
            f'server_name: "{self.name}"\n'
            f'listen: "127.0.0.1:{self.port}"\n'
            # Every write flushed to disk before it is acknowledged, as Jepsen's analysis
            # of NATS 2.12.1 recommends: a node killed with SIGKILL loses no acked write.
            f'jetstream {{ store_dir: "{self.root / "js"}", sync_interval: always }}\n'
            "cluster {\n"
            f'  name: "{CLUSTER_NAME}"\n'
            f'  listen: "127.0.0.1:{self.cluster_port}"\n'
            f"  routes: [{listed}]\n"
            "}\n" + authorization
        )

    def start(self) -> None:
        log = (self.root / "nats.log").open("ab")
        self.proc = subprocess.Popen(
            [str(nats_server_binary()), "-c", str(self.root / "nats.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_listening(self, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc is None or self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited: {self.root / 'nats.log'}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name} is not listening") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """``kill -9``: no shutdown, no leadership handed over, nothing flushed."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        stop_server(self.proc)
        self.proc = None


@dataclass
class NatsCluster:
    root: Path
    passwords: dict[str, str]
    authorization: str
    nodes: list[Node] = field(default_factory=list)

    @classmethod
    def of(
        cls, root: Path, rights: dict[str, nats_auth.Rights], passwords: dict[str, str]
    ) -> NatsCluster:
        cluster = cls(root, passwords, nats_auth.render_config(rights, passwords))
        cluster.nodes = [Node(f"n{i}", root / f"n{i}") for i in (1, 2, 3)]
        return cluster

    def start(self) -> None:
        for node in self.nodes:
            others = [n.cluster_port for n in self.nodes if n is not node]
            node.write_config(others, self.authorization)
            node.start()
        for node in self.nodes:
            node.wait_listening()

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def url(self, user: str, first: str | None = None) -> str:
        """NATS_URL of ``user`` naming every node (comma-separated), ``first`` first."""
        nodes = sorted(self.nodes, key=lambda n: n.name != first)
        return ",".join(nats_auth.with_user(n.address, user, self.passwords[user]) for n in nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
