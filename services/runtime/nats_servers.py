"""NATS_URL names one server or several servers of one cluster, comma-separated:
``nats://engram_ingest:<password>@nats-0:4222,nats://engram_ingest:<password>@nats-1:4222``
(the credentials may be given once, on any of them: ``nats://u:p@nats-0:4222,nats-1:4222``).

The login is taken out of the URLs and given to the client as its user and password,
because nats-py logs in to a server with the credentials of that server's URL: the servers
it learns from the cluster (INFO ``connect_urls``) have none, so failing over to one of
them would be refused with an authorization violation, which closes the connection for
good. As options, they apply to every server, given or discovered.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class NatsServers:
    servers: list[str]  # without credentials when ``user`` and ``password`` are set
    user: str | None = None
    password: str | None = None


def _with_scheme(server: str) -> str:
    return server if "://" in server else f"nats://{server}"


def parse_servers(url: str) -> NatsServers:
    """The servers of ``url`` (comma-separated) and the one login they share; a
    ``ValueError`` when none is named or two name different logins."""
    items = [_with_scheme(s.strip()) for s in url.split(",") if s.strip()]
    if not items:
        raise ValueError("NATS_URL names no server")
    logins = {(p.username, p.password) for p in map(urlsplit, items) if p.username}
    if len(logins) > 1:
        raise ValueError("NATS_URL names its servers with different logins: give one")
    if not logins:
        return NatsServers(items)
    user, password = logins.pop()
    if password is None:
        # A token (``nats://<token>@host``): nats-py reads it from each URL, so it stays in
        # every one of them.
        return NatsServers([_with_login(s, user, None) for s in items])
    return NatsServers([_with_login(s, None, None) for s in items], user, password)


def _with_login(server: str, user: str | None, password: str | None) -> str:
    parts = urlsplit(server)
    host = parts.netloc.rsplit("@", 1)[-1]
    login = "" if user is None else (user if password is None else f"{user}:{password}") + "@"
    return urlunsplit(parts._replace(netloc=login + host))
