"""Pydantic contracts of every event and query on engram's bus: its public API."""

from contracts.chat import CHAT_EVENT, CHAT_EVENT_TYPES, ChatEvent
from contracts.envelope import SCHEMA_VERSION, Contract, Envelope

__all__ = ["CHAT_EVENT", "CHAT_EVENT_TYPES", "SCHEMA_VERSION", "ChatEvent", "Contract", "Envelope"]
