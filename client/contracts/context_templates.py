"""Context templates (seed 002 ``context_templates``): named system text with variables,
kept per tenant by the context service from ``context.template.put`` and
``context.template.deleted`` events (stream CONTEXT; published by agents and admin
tools). A ``query.context.build`` that names a template starts with its segments, fills
their ``{variables}`` from the template's ``defaults`` overlaid by the request's
``variables``, and counts one more use.

Order: the newest ``occurred_at`` wins per (tenant, name): a put older than the delete
(or put) already applied is ignored, so redeliveries and reordering settle on the last
word."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from contracts.context import InlineSegment
from contracts.envelope import Contract, Envelope

TEMPLATE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$"


class TemplatePutPayload(Contract):
    name: str = Field(
        pattern=TEMPLATE_NAME,
        description="The template's name, unique per tenant; a put replaces it.",
        examples=["travel-assistant"],
    )
    segments: list[InlineSegment] = Field(
        min_length=1,
        max_length=50,
        description="System text, in order, with `{variable}` placeholders.",
        examples=[[{"name": "persona", "text": "You are {agent_id}, a {tone} travel agent."}]],
    )
    defaults: dict[str, str] = Field(
        default_factory=dict,
        description="Values of variables a build does not give.",
        examples=[{"tone": "friendly"}],
    )
    description: str | None = Field(
        default=None, max_length=2000, description="What it is for.", examples=["Trips."]
    )
    use_cases: list[str] = Field(
        default_factory=list, max_length=50, description="Labels.", examples=[["booking"]]
    )
    agent_types: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Kinds of agent it suits.",
        examples=[["assistant"]],
    )


class TemplateDeletedPayload(Contract):
    name: str = Field(pattern=TEMPLATE_NAME, description="The template.", examples=["travel-bot"])


class TemplatePut(Envelope):
    """Create or replace a named context template."""

    type: Literal["context.template.put"] = "context.template.put"
    payload: TemplatePutPayload


class TemplateDeleted(Envelope):
    """Delete a named context template (a later build naming it is `not_found`)."""

    type: Literal["context.template.deleted"] = "context.template.deleted"
    payload: TemplateDeletedPayload


TEMPLATE_EVENT_TYPES: tuple[type[Envelope], ...] = (TemplatePut, TemplateDeleted)
