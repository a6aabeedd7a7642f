"""Every contract by a stable name, for `engram schema` and the docs."""

from __future__ import annotations

from pydantic import BaseModel

from contracts.chat import CHAT_EVENT_TYPES


def all_contracts() -> dict[str, type[BaseModel]]:
    return {model.model_fields["type"].default: model for model in CHAT_EVENT_TYPES}
