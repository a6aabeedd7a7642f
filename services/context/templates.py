"""Named templates: kept from ``context.template.put`` / ``.deleted`` (the worker's durable
consumer ``context`` on the CONTEXT stream), read by builds that name one, and counted
(``use_count``) in the build's own transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

import asyncpg
from pydantic import Field, TypeAdapter

from contracts.context import InlineSegment
from contracts.context_templates import TEMPLATE_EVENT_TYPES, TemplateDeleted, TemplatePut
from services.context.settings import ContextSettings
from services.context.tokens import tokenizer
from services.runtime.bus import CONTEXT
from services.runtime.db import Connection, scope_tenant
from services.runtime.pipeline import contract_decoder
from services.runtime.spec import Consumes

TemplateEvent = Annotated[TemplatePut | TemplateDeleted, Field(discriminator="type")]
TEMPLATE_EVENT = TypeAdapter[TemplateEvent](TemplateEvent)

# The newest occurred_at wins; a put after a delete clears the tombstone.
PUT = """
INSERT INTO context.templates AS t
    (tenant_id, name, segments, defaults, description, use_cases, agent_types, token_total,
     occurred_at, event_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (tenant_id, name) DO UPDATE SET
    segments = EXCLUDED.segments, defaults = EXCLUDED.defaults,
    description = EXCLUDED.description, use_cases = EXCLUDED.use_cases,
    agent_types = EXCLUDED.agent_types, token_total = EXCLUDED.token_total,
    occurred_at = EXCLUDED.occurred_at, event_id = EXCLUDED.event_id,
    deleted_at = NULL, updated_at = now()
WHERE t.occurred_at <= EXCLUDED.occurred_at
"""
DELETE = """
INSERT INTO context.templates AS t
    (tenant_id, name, segments, occurred_at, event_id, deleted_at)
VALUES ($1, $2, '[]', $3, $4, $3)
ON CONFLICT (tenant_id, name) DO UPDATE SET
    occurred_at = EXCLUDED.occurred_at, event_id = EXCLUDED.event_id,
    deleted_at = EXCLUDED.occurred_at, updated_at = now()
WHERE t.occurred_at <= EXCLUDED.occurred_at
"""
READ = """
SELECT segments, defaults FROM context.templates
 WHERE tenant_id = $1 AND name = $2 AND deleted_at IS NULL
"""


@dataclass(frozen=True)
class Template:
    name: str
    segments: list[InlineSegment]
    defaults: dict[str, str]


def consumes(settings: ContextSettings) -> list[Consumes]:
    async def apply(
        conn: Connection, events: Sequence[TemplatePut | TemplateDeleted]
    ) -> Mapping[UUID, str]:
        # Templates change rarely: one statement per event, in stream order.
        tok = tokenizer(settings.tokenizer)
        for e in events:
            if isinstance(e, TemplatePut):
                p = e.payload
                await conn.execute(
                    PUT,
                    e.tenant_id,
                    p.name,
                    [s.model_dump(mode="json") for s in p.segments],
                    p.defaults,
                    p.description,
                    p.use_cases,
                    p.agent_types,
                    tok.count("\n\n".join(s.text for s in p.segments)),
                    e.occurred_at,
                    e.event_id,
                )
            else:
                await conn.execute(DELETE, e.tenant_id, e.payload.name, e.occurred_at, e.event_id)
        return {}

    return [
        Consumes(
            CONTEXT,
            CONTEXT.subjects,
            contract_decoder(TEMPLATE_EVENT),
            apply,
            contracts=TEMPLATE_EVENT_TYPES,
        )
    ]


async def read(pool: asyncpg.Pool, tenant: str, name: str) -> Template | None:
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        await scope_tenant(conn, tenant)
        row = await conn.fetchrow(READ, tenant, name)
    if row is None:
        return None
    return Template(
        name,
        [InlineSegment.model_validate(s) for s in row["segments"]],
        dict(row["defaults"]),
    )
