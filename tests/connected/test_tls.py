"""TLS to NATS and to PostgreSQL, with self-signed certificates made by the test (issue 13).

NATS: a nats-server that accepts TLS only, with engram's authorization block; the bus is
set up and the real ingest worker applies an event over it when NATS_CA_FILE names the
authority that signed the server's certificate, and a client that does not trust it is
refused. PostgreSQL: a worker's login with ``sslmode=verify-full`` and the authority's file
connects encrypted and verified, and refuses a server its authority did not sign.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import asyncpg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from services.catalog import SERVICES
from services.runtime import nats_auth
from services.runtime.bus_setup import connect, setup_bus
from services.runtime.db import create_pool
from services.runtime.worker import Worker
from tests import factories as f
from tests.conftest import Env
from tests.connected.cluster_fixtures import Node
from tests.helpers import eventually

pytestmark = pytest.mark.connected

RunWorker = Callable[..., AbstractAsyncContextManager[Worker]]


@dataclass(frozen=True)
class Authority:
    ca: Path  # the self-signed authority's certificate
    cert: Path  # the server's certificate for 127.0.0.1 and localhost, signed by it
    key: Path


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_authority(folder: Path, name: str) -> Authority:
    """A self-signed authority and a server certificate for 127.0.0.1 and localhost."""
    folder.mkdir(parents=True)
    now = datetime.now(UTC)
    ca_key, server_key = _key(), _key()
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{name} test CA"))
        .issuer_name(_name(f"{name} test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    authority = Authority(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    authority.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    authority.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    authority.key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    authority.key.chmod(0o600)
    return authority


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return make_authority(tmp_path / "ca", "engram")


@pytest.fixture
def tls_nats(env: Env, tmp_path: Path, authority: Authority) -> Iterator[Node]:
    node = Node("tls", tmp_path / "nats")
    node.root.mkdir(parents=True)
    rights = nats_auth.catalog_rights(SERVICES)
    (node.root / "nats.conf").write_text(
        f'listen: "127.0.0.1:{node.port}"\n'
        f'jetstream {{ store_dir: "{node.root / "js"}" }}\n'
        f'tls {{ cert_file: "{authority.cert}", key_file: "{authority.key}" }}\n'
        + nats_auth.render_config(rights, env.servers.stack.passwords)
    )
    node.start()
    node.wait_listening()
    yield node
    node.stop()


def tls_url(node: Node, user: str, env: Env) -> str:
    return nats_auth.with_user(
        f"tls://127.0.0.1:{node.port}", user, env.servers.stack.passwords[user]
    )


async def test_workers_reach_nats_over_tls_with_the_authority_they_are_given(
    *,
    env: Env,
    tls_nats: Node,
    authority: Authority,
    db: asyncpg.Connection,
    run_ingest: RunWorker,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Without the authority, the system's store does not know the server's certificate.
    with pytest.raises((ssl.SSLError, OSError)):
        await connect(tls_url(tls_nats, "admin", env), connect_timeout=3, allow_reconnect=False,
                      max_reconnect_attempts=0)  # fmt: skip
    # Nor with another authority's file.
    stranger = make_authority(tmp_path / "stranger", "stranger")
    monkeypatch.setenv("NATS_CA_FILE", str(stranger.ca))
    with pytest.raises((ssl.SSLError, OSError)):
        await connect(tls_url(tls_nats, "admin", env), connect_timeout=3, allow_reconnect=False,
                      max_reconnect_attempts=0)  # fmt: skip

    monkeypatch.setenv("NATS_CA_FILE", str(authority.ca))
    assert await setup_bus(tls_url(tls_nats, "admin", env))
    producer = await connect(tls_url(tls_nats, "producer", env))
    try:
        event = f.conversation(uuid4(), title="over tls")
        ack = await producer.jetstream().publish(
            event.type, event.model_dump_json().encode(), headers=event.headers()
        )
        assert ack.stream == "CHAT"
        assert producer._current_server is not None
        assert producer._current_server.uri.scheme == "tls"
    finally:
        await producer.close()
    async with run_ingest(nats_url=tls_url(tls_nats, "ingest", env)):
        title = await eventually(
            lambda: db.fetchval(
                "SELECT title FROM ingest.conversations WHERE conversation_id = $1",
                event.payload.conversation_id,
            ),
            lambda found: found is not None,
        )
    assert title == "over tls"


# --- PostgreSQL ------------------------------------------------------------------------
#
# The embedded PostgreSQL (a PyPI build) has no TLS, so the server's side is played by a
# small terminator in front of it that speaks PostgreSQL's own handshake (an SSLRequest
# answered 'S', then TLS with the server's certificate) and passes the bytes on in the
# clear. What is tested is the client's side: that a worker's DATABASE_URL with
# `sslmode=verify-full` and `sslrootcert` connects encrypted and verified, and refuses a
# server whose certificate its authority did not sign.

SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")


class TlsTerminator:
    def __init__(self, target: tuple[str, int], authority: Authority) -> None:
        self._target = target
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(authority.cert, authority.key)
        self.handshakes = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if await reader.readexactly(8) != SSL_REQUEST:
                return  # in the clear: refused, as a server with hostssl only would
            writer.write(b"S")
            await writer.drain()
            await writer.start_tls(self._context)
            self.handshakes += 1
            up_reader, up_writer = await asyncio.open_connection(*self._target)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


def with_address(dsn: str, port: int, query: str) -> str:
    parts = urlsplit(dsn)
    login = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{login}@localhost:{port}", query=query))


async def test_a_worker_login_reaches_postgres_over_verified_tls_only(
    env: Env, authority: Authority, tmp_path: Path
) -> None:
    login = env.login("ingest")
    target = urlsplit(login)
    terminator = TlsTerminator((target.hostname or "127.0.0.1", target.port or 5432), authority)
    port = await terminator.start()
    try:
        verified = with_address(login, port, f"sslmode=verify-full&sslrootcert={authority.ca}")
        pool = await create_pool(verified, worker=True, max_size=2)
        try:
            assert await pool.fetchval("SELECT current_user") == "engram_ingest"
        finally:
            await pool.close()
        assert terminator.handshakes >= 1
        stranger = make_authority(tmp_path / "stranger", "stranger")
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncpg.connect(
                with_address(login, port, f"sslmode=verify-full&sslrootcert={stranger.ca}"),
                timeout=5,
            )
        with pytest.raises((ConnectionError, OSError, asyncpg.PostgresError)):
            await asyncpg.connect(with_address(login, port, "sslmode=disable"), timeout=5)
    finally:
        await terminator.stop()
