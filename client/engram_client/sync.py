"""``SyncEngramClient``: the same client for code without an event loop (a Flask view, a
script, a Celery task). It runs one ``EngramClient`` on an event loop in its own daemon
thread, so it also works where a loop is already running in the calling thread; every
method blocks until the async one is done and raises the same exceptions."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

from pydantic import BaseModel

from contracts.chat_queries import ChatConversationsReply, ChatHistoryReply
from contracts.context import ContextBuildReply, ContextSnapshotReply
from contracts.embedding import EmbedReply, KnowledgeSearchReply
from contracts.envelope import Envelope
from contracts.knowledge import KnowledgeSourcesReply
from contracts.memory_search import MemorySearchReply
from contracts.state_queries import Partition, StateDiffReply, StateGetReply, StateHistoryReply
from engram_client.client import EngramClient, Published
from engram_client.events import EventBuilder

T = TypeVar("T")


class SyncEngramClient:
    """Blocking wrapper of ``EngramClient``: ``SyncEngramClient.connect(...)`` takes the
    arguments of ``EngramClient.connect``; ``events`` is the same builder."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self._loop = loop
        self._thread = thread
        self._client: EngramClient | None = None

    @classmethod
    def connect(cls, *args: Any, **kwargs: Any) -> SyncEngramClient:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="engram-client", daemon=True)
        thread.start()
        self = cls(loop, thread)
        try:
            self._client = self._run(EngramClient.connect(*args, **kwargs))
        except BaseException:
            self._stop()
            raise
        return self

    @property
    def client(self) -> EngramClient:
        if self._client is None:
            raise RuntimeError("closed")
        return self._client

    @property
    def events(self) -> EventBuilder:
        return self.client.events

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def close(self) -> None:
        if self._client is not None:
            try:
                self._run(self._client.close())
            finally:
                self._client = None
                self._stop()

    def __enter__(self) -> SyncEngramClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def publish(self, event: Envelope, **kwargs: Any) -> Published:
        return self._run(self.client.publish(event, **kwargs))

    def publish_many(self, events: Iterable[Envelope], **kwargs: Any) -> list[Published]:
        return self._run(self.client.publish_many(events, **kwargs))

    def query(self, request: BaseModel, **kwargs: Any) -> BaseModel:
        return self._run(self.client.query(request, **kwargs))

    def embed(self, texts: Sequence[str], **kwargs: Any) -> EmbedReply:
        return self._run(self.client.embed(texts, **kwargs))

    def knowledge_search(self, text: str, **kwargs: Any) -> KnowledgeSearchReply:
        return self._run(self.client.knowledge_search(text, **kwargs))

    def memory_search(self, text: str, *, agent_id: str, **kwargs: Any) -> MemorySearchReply:
        return self._run(self.client.memory_search(text, agent_id=agent_id, **kwargs))

    def state_get(
        self,
        *,
        user_id: str,
        agent_id: str,
        at_version: int | None = None,
        at_time: datetime | None = None,
        partitions: Sequence[Partition] | None = None,
        **kwargs: Any,
    ) -> StateGetReply:
        return self._run(
            self.client.state_get(
                user_id=user_id,
                agent_id=agent_id,
                at_version=at_version,
                at_time=at_time,
                partitions=partitions,
                **kwargs,
            )
        )

    def state_history(self, *, user_id: str, agent_id: str, **kwargs: Any) -> StateHistoryReply:
        return self._run(self.client.state_history(user_id=user_id, agent_id=agent_id, **kwargs))

    def state_diff(
        self, *, user_id: str, agent_id: str, from_version: int, to_version: int, **kwargs: Any
    ) -> StateDiffReply:
        return self._run(
            self.client.state_diff(
                user_id=user_id,
                agent_id=agent_id,
                from_version=from_version,
                to_version=to_version,
                **kwargs,
            )
        )

    def knowledge_sources(self, agent_id: str, **kwargs: Any) -> KnowledgeSourcesReply:
        return self._run(self.client.knowledge_sources(agent_id, **kwargs))

    def chat_history(self, conversation_id: Any, **kwargs: Any) -> ChatHistoryReply:
        return self._run(self.client.chat_history(conversation_id, **kwargs))

    def chat_conversations(self, **kwargs: Any) -> ChatConversationsReply:
        return self._run(self.client.chat_conversations(**kwargs))

    def context_build(
        self, query: str, *, agent_id: str, user_id: str, token_budget: int, **kwargs: Any
    ) -> ContextBuildReply:
        return self._run(
            self.client.context_build(
                query, agent_id=agent_id, user_id=user_id, token_budget=token_budget, **kwargs
            )
        )

    def context_snapshot(self, **kwargs: Any) -> ContextSnapshotReply:
        return self._run(self.client.context_snapshot(**kwargs))
