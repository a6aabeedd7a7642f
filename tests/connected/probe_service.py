"""A probe service for the runtime's connected tests, declared the way any service declares
itself (settings, an assembly, a spec): it consumes ``chat.message.created`` and announces
each message it applied through its outbox as an ``engram.probe.echo``, carrying the
message's correlation id. With ``later_content`` set, a message of that content cannot be
applied yet (as a message whose conversation has not arrived), so it is retried and in the
end dead-lettered: the tracing tests need that outcome, the outbox tests do not."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from contracts.chat import CHAT_EVENT, ChatEvent
from contracts.envelope import Envelope
from services.runtime.bus import CHAT
from services.runtime.db import Connection
from services.runtime.migrate import migrate
from services.runtime.outbox import Outbox, Outgoing
from services.runtime.pipeline import contract_decoder
from services.runtime.service import build_worker_app
from services.runtime.settings import WorkerSettings
from services.runtime.spec import Assembly, Consumes, ServiceSpec
from services.runtime.tracing import Tracing
from services.runtime.worker import Worker
from tests.conftest import Env
from tests.connected.conftest import FAST_RETRIES
from tests.connected.worker_fixtures import in_process

ECHO = "engram.probe.echo"


class ProbeSettings(WorkerSettings):
    service: ClassVar[str] = "probe"
    model_config = SettingsConfigDict(env_prefix="PROBE_")

    later_content: str | None = Field(
        default=None,
        description="A message of this content is not applicable yet (retried, then "
        "dead-lettered); None: every message is applied.",
        examples=["later"],
    )


class ProbeEcho(Envelope):
    """What the probe announces for each message it applied."""

    type: Literal["engram.probe.echo"] = "engram.probe.echo"
    payload: dict[str, str]


def echo_of(event: ChatEvent) -> ProbeEcho:
    return ProbeEcho(
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"echo:{event.event_id}"),
        occurred_at=event.occurred_at,
        tenant_id=event.tenant_id,
        producer="probe",
        correlation_id=event.correlation_id,
        causation_id=event.event_id,
        payload={"of": str(event.event_id)},
    )


OUTBOX = Outbox("probe")


def assemble(settings: ProbeSettings) -> Assembly:
    async def apply_echo(conn: Connection, events: Sequence[ChatEvent]) -> Mapping[UUID, str]:
        later = {
            e.event_id: "its conversation has not arrived"
            for e in events
            if settings.later_content is not None
            and getattr(e.payload, "content", None) == settings.later_content
        }
        echoes = [echo_of(e) for e in events if e.event_id not in later]
        await OUTBOX.add(conn, [Outgoing.event(echo) for echo in echoes])
        return later

    return Assembly(
        consumes=[
            Consumes(CHAT, ("chat.message.created",), contract_decoder(CHAT_EVENT), apply_echo)
        ],
        publishes=(ProbeEcho,),
    )


SPEC = ServiceSpec(
    name="probe",
    schema="probe",
    settings=ProbeSettings,
    assemble=f"{__name__}:assemble",
    description="A probe service: announces each message it applied.",
    docs="architecture.md",
)


async def install(env: Env) -> str:
    """The probe's schema: the runtime's tables only (inbox, outbox, positions)."""
    await migrate(env.database_url, [SPEC.store])
    return env.database_url


def probe_settings(env: Env, **overrides: Any) -> ProbeSettings:
    values = {
        "nats_url": env.nats_url,
        "database_url": env.login(SPEC.name),
        "outbox_poll_s": 0.2,
        **FAST_RETRIES,
        **overrides,
    }
    return ProbeSettings(**values)


def running(
    env: Env, tracing: Tracing | None = None, **overrides: Any
) -> AbstractAsyncContextManager[Worker]:
    """The probe worker in this process (``install`` its schema first)."""
    run = in_process(lambda s: build_worker_app(SPEC, s, tracing), partial(probe_settings, env))
    return run(**overrides)
