"""``EngramSaver``: a LangGraph checkpointer backed by engram's checkpointer service.

    async with EngramSaver.connect("nats://agent:secret@nats:4222", tenant_id="acme") as saver:
        graph = builder.compile(checkpointer=saver)

Every method is one ``query.langgraph.*`` request that the service answers after COMMIT
(``aput`` returned: durable, and every later read sees it). Values are serialized with
LangGraph's serde (``lg_wire.py``); the service stores them as zstd deltas between
consecutive versions of a channel (docs/langgraph.md). No lock: concurrent graphs on one
saver make concurrent requests. The sync methods, as in LangGraph's ``AsyncPostgresSaver``, run on
the saver's event loop and may only be called from another thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from nats.aio.client import Client as NatsClient
from pydantic import BaseModel

from contracts.langgraph import (
    COMMANDS,
    BlobIn,
    CopyThreadRequest,
    DeleteForRunsRequest,
    DeleteThreadRequest,
    DoneReply,
    GetTupleReply,
    GetTupleRequest,
    ListReply,
    ListRequest,
    PruneRequest,
    PutReply,
)
from engram_client.asking import ask
from engram_client.connect import OwnsConnection
from engram_client.errors import Pruned
from engram_client.lg_blocking import BlockingSaver
from engram_client.lg_held import DELTA_ABOVE, Head, HeldBlobs, ThreadKey, delta
from engram_client.lg_versions import next_version
from engram_client.lg_wire import INLINE_STR as INLINE_STR  # noqa: PLC0414 (public here too)
from engram_client.lg_wire import checkpoint_tuple, put_request, put_writes_request
from engram_client.options import Retry

R = TypeVar("R", bound=BaseModel)
THREAD_ABOVE = 64 * 1024  # bytes of bases above which deltas are made on a thread


class EngramSaver(BlockingSaver, OwnsConnection):
    """``EngramSaver(nc, tenant_id=...)`` over a connection the caller owns, or
    ``async with EngramSaver.connect(url, tenant_id=..., nats_options=...)`` on its own."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        tenant_id: str,
        timeout_s: float = 10.0,
        attempts: int = 3,
        serde: SerializerProtocol | None = None,
        held_bytes: int = 64 * 1024 * 1024,
        keyframe_every: int = 32,
    ) -> None:
        """``held_bytes``: bytes of channel values kept to read this saver's threads
        again without the service sending them, and to send a channel's next version as
        a delta on them (``engram_client.lg_held``; 0: none). ``keyframe_every``: a value
        is sent whole (the service stores it alone or as its own delta) when its delta
        would be this deep: a read decodes at most that many frames."""
        super().__init__(serde=serde)
        self.held = HeldBlobs(held_bytes)
        self.keyframe_every = keyframe_every
        self.nc = nc
        self.tenant_id = tenant_id
        # A command is safe to repeat (puts upsert, writes keep the first, deletes repeat).
        self.retry = Retry(attempts=attempts, timeout_s=timeout_s, base_s=0.1)
        self.loop = asyncio.get_running_loop()

    # ---- the request helper -----------------------------------------------------------

    async def _ask(self, subject: str, request: BaseModel, result: type[R]) -> R:
        body = request.model_dump_json().encode()
        reply = await ask(self.nc, subject, body, COMMANDS[subject][1], self.retry)
        assert isinstance(reply, result)
        return reply

    # ---- async interface ----------------------------------------------------------------

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        conf = config["configurable"]
        thread_id, ns = conf["thread_id"], conf.get("checkpoint_ns", "")
        request = put_request(
            config, checkpoint, metadata, new_versions, tenant_id=self.tenant_id, serde=self.serde
        )
        blobs = request.blobs
        thread = (thread_id, ns)
        sent = await self._deltas(thread, blobs)
        try:
            reply = await self._ask(
                "query.langgraph.put", request.model_copy(update={"blobs": sent}), PutReply
            )
        except Pruned:  # a base was pruned or deleted since: send them whole
            if sent == blobs:
                raise
            self.held.drop_heads(thread)
            reply = await self._ask("query.langgraph.put", request, PutReply)
        for blob in blobs:
            blob_id = reply.blob_ids.get(blob.channel)
            if blob_id is not None and blob.type != "empty":
                self.held.put(blob_id, thread, blob.type, blob.data or b"")
                depth = reply.depths.get(blob.channel, self.keyframe_every)
                self.held.put_head(thread, blob.channel, blob_id, depth)
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    async def _deltas(self, thread: ThreadKey, blobs: list[BlobIn]) -> list[BlobIn]:
        """Each value as a delta on the channel's newest version this saver put, where it
        holds that and the delta pays; the others as they are."""
        pairs: list[tuple[BlobIn, Head]] = []
        for blob in blobs:
            head = None
            if blob.type != "empty" and len(blob.data or b"") >= DELTA_ABOVE:
                head = self.held.head(thread, blob.channel)
            if head is not None and head.data and head.depth + 1 < self.keyframe_every:
                pairs.append((blob, head))
        if not pairs:
            return blobs

        def frames() -> list[bytes | None]:
            return [delta(blob.data or b"", head.data) for blob, head in pairs]

        big = sum(len(head.data) for _, head in pairs) > THREAD_ABOVE
        # zstd releases the GIL: a long conversation's delta does not hold up the loop.
        made = await asyncio.to_thread(frames) if big else frames()
        update = {
            blob.channel: blob.model_copy(
                update={"data": frame, "base_id": head.blob_id, "raw_bytes": len(blob.data or b"")}
            )
            for (blob, head), frame in zip(pairs, made, strict=True)
            if frame is not None
        }
        return [update.get(blob.channel, blob) for blob in blobs]

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        request = put_writes_request(
            config, writes, task_id, task_path, tenant_id=self.tenant_id, serde=self.serde
        )
        await self._ask("query.langgraph.put_writes", request, DoneReply)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        thread = (conf["thread_id"], conf.get("checkpoint_ns", ""))
        held = self.held.snapshot(thread)
        request = GetTupleRequest(
            tenant_id=self.tenant_id,
            thread_id=thread[0],
            checkpoint_ns=thread[1],
            checkpoint_id=get_checkpoint_id(config),
            held=list(held),
        )
        reply = await self._ask("query.langgraph.get_tuple", request, GetTupleReply)
        if reply.checkpoint is None:
            return None
        return checkpoint_tuple(self.serde, self.held, reply.checkpoint, held)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        conf = (config or {}).get("configurable", {})
        cursor = get_checkpoint_id(before) if before else None
        left = limit
        while left is None or left > 0:
            request = ListRequest(
                tenant_id=self.tenant_id,
                thread_id=conf.get("thread_id"),
                checkpoint_ns=conf.get("checkpoint_ns"),
                checkpoint_id=get_checkpoint_id(config) if config else None,
                filter=filter or None,
                before=cursor,
                limit=left,
            )
            page = await self._ask("query.langgraph.list", request, ListReply)
            for view in page.items:
                yield checkpoint_tuple(self.serde, self.held, view)
            if left is not None:
                left -= len(page.items)
            if not page.size_limited or not page.items:
                return
            cursor = page.items[-1].checkpoint_id

    async def adelete_thread(self, thread_id: str) -> None:
        self.held.drop_thread(thread_id)
        request = DeleteThreadRequest(tenant_id=self.tenant_id, thread_id=thread_id)
        await self._ask("query.langgraph.delete_thread", request, DoneReply)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        request = DeleteForRunsRequest(tenant_id=self.tenant_id, run_ids=list(run_ids))
        await self._ask("query.langgraph.delete_for_runs", request, DoneReply)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        request = CopyThreadRequest(
            tenant_id=self.tenant_id,
            source_thread_id=source_thread_id,
            target_thread_id=target_thread_id,
        )
        await self._ask("query.langgraph.copy_thread", request, DoneReply)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        request = PruneRequest.model_validate(
            {"tenant_id": self.tenant_id, "thread_ids": list(thread_ids), "strategy": strategy}
        )
        await self._ask("query.langgraph.prune", request, DoneReply)

    def get_next_version(self, current: str | None, channel: None) -> str:
        return next_version(current)
