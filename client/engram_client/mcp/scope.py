"""What every tool shares: the configuration (tenant, agent, user), one connected
``EngramClient``, and the memory ids this server has shown or written."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from uuid import UUID

from engram_client.client import EngramClient
from engram_client.mcp.settings import McpSettings


class RememberedIds:
    """Memory ids seen through this server, oldest dropped past ``limit``. ``memory.forget``
    by id is scoped by tenant only, so the server itself keeps a model from erasing a
    memory of another agent or user whose id it guessed or was told."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._ids: OrderedDict[UUID, None] = OrderedDict()

    def add(self, ids: Iterable[UUID]) -> None:
        for memory_id in ids:
            self._ids[memory_id] = None
            self._ids.move_to_end(memory_id)
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)

    def unknown(self, ids: Iterable[UUID]) -> list[UUID]:
        return [memory_id for memory_id in ids if memory_id not in self._ids]

    def drop(self, ids: Iterable[UUID]) -> None:
        for memory_id in ids:
            self._ids.pop(memory_id, None)


@dataclass
class Scope:
    settings: McpSettings
    client: EngramClient
    seen: RememberedIds = field(init=False)

    def __post_init__(self) -> None:
        self.seen = RememberedIds(self.settings.remembered_ids)

    @property
    def tenant(self) -> str:
        return self.settings.tenant_id

    @property
    def agent(self) -> str:
        return self.settings.agent_id

    @property
    def user(self) -> str | None:
        return self.settings.user_id

    @property
    def actor(self) -> str:
        """Who the events say asked: the user when there is one, else the agent."""
        return self.settings.user_id or f"agent:{self.settings.agent_id}"
