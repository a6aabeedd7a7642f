"""How the client connects and how it retries: plain frozen dataclasses (the client
depends on pydantic and nats-py only, and a caller builds these from its own settings)."""

from __future__ import annotations

import random
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit


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

    engram's NATS users may read replies only under their own inbox prefix (docs/
    security.md): by default the client takes ``_INBOX_<name>`` when it logs in as
    ``engram_<name>`` (in ``user`` or in the URL), else NATS's ``_INBOX``.

    The first connection must succeed within ``connect_within_s`` (each try within
    ``connect_timeout_s``), else ``connect`` raises ``ConnectFailed``; once connected, a lost
    connection is re-established ``max_reconnect_attempts`` times (-1: for ever), calls
    failing meanwhile with ``RequestTimeout`` / ``PublishFailed`` after their retries."""

    servers: str | tuple[str, ...] = "nats://127.0.0.1:4222"
    user: str | None = None
    password: str | None = None
    token: str | None = None
    credentials_file: str | None = None  # a NATS .creds file (JWT + nkey seed)
    nkeys_seed_file: str | None = None
    tls: ssl.SSLContext | None = None  # e.g. ssl.create_default_context(cafile=...)
    tls_hostname: str | None = None
    inbox_prefix: str | None = None  # None: the user's own (above)
    name: str = "engram-client"  # shown in the server's connection list
    connect_timeout_s: float = 5.0
    connect_within_s: float = 20.0
    max_reconnect_attempts: int = -1
    reconnect_time_wait_s: float = 1.0

    def server_list(self) -> list[str]:
        return [self.servers] if isinstance(self.servers, str) else list(self.servers)

    def inbox(self) -> str:
        """The reply-inbox prefix: given, else the engram user's own, else ``_INBOX``."""
        if self.inbox_prefix:
            return self.inbox_prefix
        user = self.user or urlsplit(self.server_list()[0]).username or ""
        return f"_INBOX_{user.removeprefix('engram_')}" if user.startswith("engram_") else "_INBOX"

    def nats_options(self) -> dict[str, object]:
        """Keyword arguments of ``nats.connect``."""
        options: dict[str, object] = {
            "servers": self.server_list(),
            "name": self.name,
            "inbox_prefix": self.inbox(),
            "connect_timeout": self.connect_timeout_s,
            "max_reconnect_attempts": self.max_reconnect_attempts,
            "reconnect_time_wait": self.reconnect_time_wait_s,
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
