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


async def connect(url: str, **options: Any) -> NatsClient:
    """A client of ``url``'s user, with that user's own reply-inbox prefix (the only
    inbox its permissions let it read)."""
    return await nats.connect(url, inbox_prefix=client_inbox(url), **options)


async def setup_bus(url: str) -> list[str]:
    """Create or update every stream and the dead-letter body bucket (idempotent); the
    names of what is now set up."""
    nc = await connect(url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        await ensure_body_store(js)
        return [*(s.name for s in STREAMS), f"bucket {BODY_BUCKET}"]
    finally:
        await nc.close()
