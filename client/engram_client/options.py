"""How the client connects and how it retries: plain frozen dataclasses (the client
depends on pydantic and nats-py only, and a caller builds these from its own settings)."""

from __future__ import annotations

import random
import ssl
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Retry:
    """Bounded retries with exponential backoff and full jitter, for what may succeed on a
    second try: a query without a reply (timeout, no responder yet, or the service's own
    ``unavailable``) and a publish without a JetStream ack. A retried publish is safe: the
    event keeps its ``Nats-Msg-Id``, so JetStream stores it once."""

    attempts: int = 4  # tries in all (1 = no retry)
    base_s: float = 0.2  # the first delay's ceiling; each next one doubles it
    max_s: float = 3.0  # no delay is longer
    timeout_s: float = 5.0  # how long one try waits for its reply or ack

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.timeout_s <= 0 or self.base_s < 0 or self.max_s < 0:
            raise ValueError(f"bad retry policy: {self}")

    def delays(self) -> Iterator[float]:
        """The pauses between tries (``attempts - 1`` of them)."""
        for attempt in range(self.attempts - 1):
            # Full jitter: clients that failed together do not retry in lockstep.
            yield random.uniform(0, min(self.max_s, self.base_s * 2**attempt))


NO_RETRY = Retry(attempts=1)


@dataclass(frozen=True)
class Connection:
    """Where the bus is and who the client is on it (any of nats-py's ways to log in).

    engram's NATS accounts let each user read replies only under its own inbox prefix:
    engram's upstream user ``engram_producer`` must connect with
    ``inbox_prefix="_INBOX_producer"`` (see docs/security.md); on a server without
    per-user permissions the default ``_INBOX`` works."""

    servers: str | tuple[str, ...] = "nats://127.0.0.1:4222"
    user: str | None = None
    password: str | None = None
    token: str | None = None
    credentials_file: str | None = None  # a NATS .creds file (JWT + nkey seed)
    nkeys_seed_file: str | None = None
    tls: ssl.SSLContext | None = None  # e.g. ssl.create_default_context(cafile=...)
    tls_hostname: str | None = None
    inbox_prefix: str = "_INBOX"
    name: str = "engram-client"  # shown in the server's connection list
    connect_timeout_s: float = 5.0
    max_reconnect_attempts: int = 60  # then the connection closes and calls fail

    def nats_options(self) -> dict[str, object]:
        """Keyword arguments of ``nats.connect``."""
        servers = [self.servers] if isinstance(self.servers, str) else list(self.servers)
        options: dict[str, object] = {
            "servers": servers,
            "name": self.name,
            "inbox_prefix": self.inbox_prefix,
            "connect_timeout": self.connect_timeout_s,
            "max_reconnect_attempts": self.max_reconnect_attempts,
        }
        given = {
            "user": self.user,
            "password": self.password,
            "token": self.token,
            "user_credentials": self.credentials_file,
            "nkeys_seed": self.nkeys_seed_file,
            "tls": self.tls,
            "tls_hostname": self.tls_hostname,
        }
        options.update({key: value for key, value in given.items() if value is not None})
        return options
