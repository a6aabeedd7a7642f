"""Setting the bus up: an admin's step, never a worker's.

``engram migrate`` (given NATS_URL), ``engram dev`` and the test session create or update
every stream and the bucket of dead-letter bodies as NATS's admin user. Workers only check
that what they need exists (``bus.require_streams``): their NATS users may not create,
update, purge or delete a stream (docs/security.md).
"""

from __future__ import annotations

from typing import Any

import nats
from nats.aio.client import Client as NatsClient

from services.runtime.bus import STREAMS, ensure_streams
from services.runtime.dlq import BODY_BUCKET, ensure_body_store
from services.runtime.nats_auth import client_inbox
from services.runtime.nats_servers import parse_servers
from services.runtime.settings import BusSettings, NatsTlsSettings


async def connect(url: str, **options: Any) -> NatsClient:
    """A client of ``url``'s user (``url``: one server or several, comma-separated), with
    that user's own reply-inbox prefix (the only inbox its permissions let it read)."""
    parsed = parse_servers(url)
    if (tls := NatsTlsSettings().context()) is not None:
        options.setdefault("tls", tls)
    return await nats.connect(
        parsed.servers,
        user=parsed.user,
        password=parsed.password,
        inbox_prefix=client_inbox(url),
        **options,
    )


async def setup_bus(url: str, replicas: int | None = None) -> list[str]:
    """Create or update every stream and the dead-letter body bucket (idempotent); the
    names of what is now set up. ``replicas``: copies of each stream in the cluster (by
    default ENGRAM_STREAM_REPLICAS; unset, a stream keeps the count it has)."""
    if replicas is None:
        replicas = BusSettings().stream_replicas
    nc = await connect(url)
    try:
        js = nc.jetstream()
        await ensure_streams(js, replicas=replicas)
        await ensure_body_store(js, replicas=replicas)
        shown = "" if replicas is None else f" (R{replicas})"
        return [*(s.name + shown for s in STREAMS), f"bucket {BODY_BUCKET}{shown}"]
    finally:
        await nc.close()
