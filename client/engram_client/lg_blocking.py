"""The blocking half of ``EngramSaver``: as in LangGraph's ``AsyncPostgresSaver``, each sync
method runs its async twin on the saver's event loop, so it may only be called from another
thread (on the loop's own thread it would wait for itself)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)

T = TypeVar("T")


def from_other_thread(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], refusal: str
) -> T:
    """``coro`` run on ``loop``, waited for: a sync method's way to its async twin (the
    saver's and ``EngramStore.sweep_ttl``). On the loop's own thread it would wait for
    itself: there it raises ``InvalidStateError(refusal)``."""
    try:
        on_loop = asyncio.get_running_loop() is loop
    except RuntimeError:
        on_loop = False
    if on_loop:
        coro.close()
        raise asyncio.InvalidStateError(refusal)
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


class BlockingSaver(BaseCheckpointSaver[str]):
    """The sync interface over the async one; the subclass sets ``loop``."""

    loop: asyncio.AbstractEventLoop

    def _blocking(self, what: str, coro: Coroutine[Any, Any, T]) -> T:
        return from_other_thread(
            self.loop,
            coro,
            "Synchronous calls to EngramSaver are only allowed from a different thread. "
            f"From the main thread, use the async interface (`await saver.a{what}(...)` "
            "or `await graph.ainvoke(...)`).",
        )

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._blocking("get_tuple", self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        async def page() -> list[CheckpointTuple]:
            return [t async for t in self.alist(config, filter=filter, before=before, limit=limit)]

        yield from self._blocking("list", page())

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._blocking("put", self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._blocking("put_writes", self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._blocking("delete_thread", self.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._blocking("delete_for_runs", self.adelete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._blocking("copy_thread", self.acopy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._blocking("prune", self.aprune(thread_ids, strategy=strategy))
