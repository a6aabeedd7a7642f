"""NATS_URL naming the servers of a cluster: the login leaves the URLs (nats-py would not
give it to the servers it discovers) and becomes the client's user and password."""

from __future__ import annotations

import pytest

from services.runtime.bus import CHAT
from services.runtime.nats_auth import client_inbox
from services.runtime.nats_servers import parse_servers
from services.runtime.settings import BusSettings


def test_one_server_keeps_working() -> None:
    parsed = parse_servers("nats://engram_ingest:pw-0123456789abcdef@nats:4222")
    assert parsed.servers == ["nats://nats:4222"]
    assert (parsed.user, parsed.password) == ("engram_ingest", "pw-0123456789abcdef")


def test_a_cluster_shares_one_login_given_once_or_on_each() -> None:
    each = parse_servers("nats://u:p@a:4222, nats://u:p@b:4222,nats://u:p@c:4222")
    once = parse_servers("nats://u:p@a:4222,b:4222,nats://c:4222")
    for parsed in (each, once):
        assert parsed.servers == ["nats://a:4222", "nats://b:4222", "nats://c:4222"]
        assert (parsed.user, parsed.password) == ("u", "p")


def test_without_a_login_or_with_a_token() -> None:
    assert parse_servers("nats://a:4222,b:4222") == parse_servers("nats://a:4222,nats://b:4222")
    assert parse_servers("a:4222").user is None
    token = parse_servers("nats://s3cret@a:4222,b:4222")
    assert token.servers == ["nats://s3cret@a:4222", "nats://s3cret@b:4222"]
    assert token.user is None


def test_two_logins_or_no_server_are_refused() -> None:
    with pytest.raises(ValueError, match="different logins"):
        parse_servers("nats://u:p@a:4222,nats://v:q@b:4222")
    with pytest.raises(ValueError, match="no server"):
        parse_servers(" , ")


def test_the_inbox_prefix_follows_the_user_of_a_cluster_url() -> None:
    assert client_inbox("nats://a:4222,nats://engram_audit:p@b:4222") == "_INBOX_audit"
    assert client_inbox("nats://a:4222,nats://b:4222") == "_INBOX"


def test_stream_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    assert BusSettings().stream_replicas is None  # keeps what a stream has
    monkeypatch.setenv("ENGRAM_STREAM_REPLICAS", "3")
    assert BusSettings().stream_replicas == 3
    assert CHAT.config(3).num_replicas == 3
    assert CHAT.config().num_replicas == 1
    monkeypatch.setenv("ENGRAM_STREAM_REPLICAS", "7")
    with pytest.raises(ValueError, match="less than or equal to 5"):
        BusSettings()
