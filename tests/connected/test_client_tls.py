"""EngramClient over TLS (a nats-server that accepts TLS only, with engram's users and a
self-signed authority made by the test): a client given the authority publishes as the
producer; one that does not trust it is refused."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from engram_client import ConnectFailed, Connection, EngramClient
from services.runtime.bus_setup import setup_bus
from tests.conftest import Env
from tests.connected.cluster_fixtures import Node
from tests.connected.test_tls import Authority, authority, make_authority, tls_nats, tls_url

pytestmark = pytest.mark.connected
__all__ = ["authority", "tls_nats"]


async def test_the_client_publishes_over_tls_with_the_authority_it_is_given(
    env: Env,
    tls_nats: Node,
    authority: Authority,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca = authority.ca
    monkeypatch.setenv("NATS_CA_FILE", str(ca))  # the harness's own setup, as admin
    assert await setup_bus(tls_url(tls_nats, "admin", env))

    def login(cafile: Path) -> Connection:
        return Connection(
            tls_url(tls_nats, "producer", env),
            tls=ssl.create_default_context(cafile=str(cafile)),
            connect_timeout_s=2,
            connect_within_s=5,
        )

    stranger = make_authority(tmp_path / "stranger", "stranger")
    with pytest.raises(ConnectFailed) as refused:
        await EngramClient.connect(login(stranger.ca), tenant_id="acme")
    assert isinstance(refused.value.cause, ssl.SSLError)
    assert env.servers.stack.passwords["producer"] not in str(refused.value)

    async with await EngramClient.connect(login(ca), tenant_id="acme") as engram:
        ack = await engram.publish(engram.events.conversation_created(title="over tls"))
        assert ack.stream == "CHAT" and not ack.duplicate
