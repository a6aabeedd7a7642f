"""Who may publish and subscribe to what on NATS, derived from the service catalog.

Each worker connects as its own NATS user (``engram_<service>``), as its DATABASE_URL logs
in as its own PostgreSQL role. Its rights are computed from what its spec declares — the
durable consumers it reads (one per stream, named after the service), the events it
publishes through the outbox, its dead letters, the queries it answers and the ones it
asks — so a new service, stream or query gets exactly the rights it uses and no more.
Two more users: ``engram_admin`` (sets the bus up, operator tools, the test harness) and
``engram_producer`` (upstream chat services, agents, schedulers: publish the events of the
upstream streams and ask queries; nothing of engram's own streams, no JetStream API).

Each user has its own reply-inbox prefix (``_INBOX_<name>``) and may subscribe only
there, so no user reads another's replies; every worker client connects with it. Nobody
may publish ``$JS.EVENT.>``: only the server emits advisories, so a max-deliveries
advisory cannot be forged. ``render_config`` writes the ``authorization`` block of a
nats-server config (plain passwords: the file is a secret, see docs/security.md).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from contracts.registry import EVENTS
from services.runtime.bus import DLQ, Stream, stream_of
from services.runtime.dlq import BODY_BUCKET
from services.runtime.nats_servers import parse_servers
from services.runtime.spec import Assembly, Catalog, ServiceSpec

ADMIN = "admin"
PRODUCER = "producer"
API = "$JS.API"
# nats-py takes user and password from the URL without percent-decoding them, so a
# password must be usable in a URL as it is.
PASSWORD_PATTERN = re.compile(r"^[A-Za-z0-9._~-]{16,}$")


def user_name(name: str) -> str:
    """The NATS user of a service (or of ``admin`` / ``producer``)."""
    return f"engram_{name}"


def inbox_prefix(name: str) -> str:
    """The reply-inbox prefix a user's clients connect with (nats-py ``inbox_prefix``)."""
    return f"_INBOX_{name}"


@dataclass(frozen=True)
class Rights:
    """One user's permissions: subjects it may publish and subscribe to."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    deny_publish: tuple[str, ...] = ()
    responds: bool = False  # may answer requests it received (allow_responses)


def body_store_rights() -> tuple[str, ...]:
    """What keeping a too-big dead letter's body takes: bind the bucket, read an object's
    info, put its chunks and meta. No purge or delete: bodies are never overwritten (a
    name holds the SHA-256 of its bytes), and the DLQ message's digest would show one
    that was (``dead_letter_body`` checks it)."""
    stream = f"OBJ_{BODY_BUCKET}"
    return (
        f"{API}.STREAM.INFO.{stream}",
        f"{API}.DIRECT.GET.{stream}.>",
        f"{API}.STREAM.MSG.GET.{stream}",
        f"$O.{BODY_BUCKET}.C.>",
        f"$O.{BODY_BUCKET}.M.>",
    )


def consumer_rights(stream: Stream, durable: str) -> tuple[str, ...]:
    """What a worker's durable pull consumer takes: look at its stream, create or update
    its own durable (durable.py re-creates it when missing), pull from it and ack, and read
    a message of the stream by sequence (the max-deliveries advisory names one; the
    checkpointer's ordering gate reads earlier ones directly)."""
    s, d = stream.name, durable
    return (
        f"{API}.STREAM.INFO.{s}",
        f"{API}.CONSUMER.INFO.{s}.{d}",
        f"{API}.CONSUMER.CREATE.{s}.{d}",
        f"{API}.CONSUMER.CREATE.{s}.{d}.>",
        f"{API}.CONSUMER.DURABLE.CREATE.{s}.{d}",
        f"{API}.CONSUMER.MSG.NEXT.{s}.{d}",
        f"$JS.ACK.{s}.{d}.>",
        f"{API}.STREAM.MSG.GET.{s}",
        f"{API}.DIRECT.GET.{s}",
        f"{API}.DIRECT.GET.{s}.>",
    )


def max_deliveries_advisory(stream: str, durable: str) -> str:
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{durable}"


def worker_rights(spec: ServiceSpec, assembly: Assembly) -> Rights:
    name = spec.name
    publish: list[str] = []
    subscribe = [f"{inbox_prefix(name)}.>"]
    for stream in dict.fromkeys(item.stream for item in assembly.consumes):
        publish += consumer_rights(stream, name)
        subscribe.append(max_deliveries_advisory(stream.name, name))
    published = [event.model_fields["type"].default for event in assembly.publishes]
    publish += [*published, *assembly.asks]
    # Every worker with a consumer dead-letters under its own name only; its start checks
    # that the DLQ stream (and the streams it publishes to) exist.
    if assembly.consumes:
        publish += [f"dlq.{name}.>", f"{API}.STREAM.INFO.{DLQ.name}", *body_store_rights()]
    publish += [f"{API}.STREAM.INFO.{stream_of(s).name}" for s in published]
    subscribe += [route.subject for route in assembly.queries]
    return Rights(
        publish=tuple(dict.fromkeys(publish)),
        subscribe=tuple(dict.fromkeys(subscribe)),
        responds=bool(assembly.queries),
    )


def producer_rights() -> Rights:
    """Upstream producers: the events of the upstream streams (every contract of
    contracts.registry they store), queries, and their own replies (JetStream's acks
    come there too)."""
    upstream = [
        event.model_fields["type"].default
        for event in EVENTS
        if stream_of(event.model_fields["type"].default).upstream
    ]
    return Rights(
        publish=(*dict.fromkeys(upstream), "query.>"),
        subscribe=(f"{inbox_prefix(PRODUCER)}.>",),
    )


def admin_rights() -> Rights:
    """Everything but forging the server's advisories."""
    return Rights(publish=(">",), subscribe=(">",), deny_publish=("$JS.EVENT.>",))


def catalog_rights(catalog: Catalog) -> dict[str, Rights]:
    """Every user's rights by short name: admin, producer, then each service."""
    rights = {ADMIN: admin_rights(), PRODUCER: producer_rights()}
    for spec in catalog:
        rights[spec.name] = worker_rights(spec, spec.assembly(spec.settings()))
    return rights


def render_config(rights: Mapping[str, Rights], passwords: Mapping[str, str]) -> str:
    """The ``authorization`` block of a nats-server config, one user per entry."""
    missing = [name for name in rights if name not in passwords]
    if missing:
        raise ValueError(f"no NATS password for: {', '.join(missing)}")
    lines = [
        "# Generated by engram from its service catalog (services/runtime/nats_auth.py);",
        "# regenerate with `engram nats-config` rather than editing. Holds passwords.",
        "authorization {",
        "  users = [",
    ]
    for name, r in rights.items():
        publish = f"allow: {_list(r.publish)}"
        if r.deny_publish:
            publish += f", deny: {_list(r.deny_publish)}"
        lines += [
            "    {",
            f"      user: {json.dumps(user_name(name))}",
            f"      password: {json.dumps(passwords[name])}",
            "      permissions: {",
            f"        publish: {{ {publish} }}",
            f"        subscribe: {{ allow: {_list(r.subscribe)} }}",
            *(["        allow_responses: true"] if r.responds else []),
            "      }",
            "    }",
        ]
    return "\n".join([*lines, "  ]", "}", ""])


def _list(subjects: Iterable[str]) -> str:
    return "[" + ", ".join(json.dumps(s) for s in subjects) + "]"


def check_password(name: str, password: str) -> None:
    if not PASSWORD_PATTERN.match(password):
        raise ValueError(
            f"the NATS password of {name} must be at least 16 characters of A-Z a-z 0-9 . _ ~ -"
            " (it travels in NATS_URL as it is)"
        )


def new_password() -> str:
    return secrets.token_urlsafe(24)


def stored_passwords(path: Path, names: Iterable[str]) -> dict[str, str]:
    """The passwords kept in ``path`` (JSON, mode 0600), with a new one for each name
    that has none yet; the file is rewritten only when one was added."""
    known: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
    added = {name: new_password() for name in names if name not in known}
    if added:
        known.update(added)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(known, indent=2) + "\n")
    return known


def with_user(url: str, name: str, password: str) -> str:
    """``url`` logging in as ``name``'s NATS user (any user info in it replaced)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user_name(name)}:{password}@{host}"))


def user_of(url: str) -> str | None:
    """The short name of the engram NATS user ``url`` logs in as, if any (it picks the
    client's inbox prefix)."""
    servers = parse_servers(url)
    user = servers.user or (urlsplit(servers.servers[0]).username or "")
    return user.removeprefix("engram_") if user.startswith("engram_") else None


def client_inbox(url: str) -> str:
    """The inbox prefix of a client connecting with ``url``: its user's own, else NATS's
    default (a server without engram's users)."""
    user = user_of(url)
    return inbox_prefix(user) if user else "_INBOX"


def rights_table(rights: Mapping[str, Rights]) -> str:
    """The markdown table of docs/security.md (a test checks the page holds it)."""
    rows = [
        "| user | may publish | may subscribe | answers requests |",
        "|---|---|---|---|",
    ]
    for name, r in rights.items():
        publish = "<br>".join(f"`{s}`" for s in r.publish)
        if r.deny_publish:
            publish += "<br>**except** " + ", ".join(f"`{s}`" for s in r.deny_publish)
        subscribe = "<br>".join(f"`{s}`" for s in r.subscribe)
        rows.append(
            f"| `{user_name(name)}` | {publish} | {subscribe} | {'yes' if r.responds else 'no'} |"
        )
    return "\n".join(rows) + "\n"
