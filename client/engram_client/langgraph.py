"""``EngramSaver``: a LangGraph checkpointer backed by engram's checkpointer service.

    async with EngramSaver.connect("nats://agent:secret@nats:4222", tenant_id="acme") as saver:
        graph = builder.compile(checkpointer=saver)

Every method is one ``query.langgraph.*`` request that the service answers after COMMIT
(``aput`` returned: durable, and every later read sees it). Values are serialized here
with LangGraph's serde; the service stores them as zstd deltas between consecutive
versions of a channel (docs/langgraph.md). No lock: concurrent graphs on one saver make
concurrent requests. The sync methods, as in LangGraph's ``AsyncPostgresSaver``, run on
the saver's event loop and may only be called from another thread.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from nats.aio.client import Client as NatsClient
from pydantic import BaseModel

from contracts.langgraph import (
    COMMANDS,
    BlobIn,
    CheckpointView,
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
    PutRequest,
    PutWritesRequest,
    Typed,
    WriteIn,
)
from engram_client.asking import ask
from engram_client.connect import OwnsConnection
from engram_client.errors import Pruned
from engram_client.lg_blocking import BlockingSaver
from engram_client.lg_held import DELTA_ABOVE, Head, HeldBlobs, HeldValue, ThreadKey, delta
from engram_client.lg_versions import next_version
from engram_client.options import Retry

R = TypeVar("R", bound=BaseModel)
# Inline in the checkpoint body, as the stock saver does: small primitives only (a long
# string is a blob, so it is stored once per version, as a delta).
INLINE_STR = 256
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
        body = checkpoint.copy()
        values = dict(checkpoint["channel_values"])
        body["channel_values"] = {k: v for k, v in values.items() if _inline(v)}
        blobs = []
        for channel, version in new_versions.items():
            if channel in body["channel_values"]:
                continue
            kind, data = (
                self.serde.dumps_typed(values[channel]) if channel in values else ("empty", b"")
            )
            blobs.append(BlobIn(channel=channel, version=str(version), type=kind, data=data))
        kind, data = self.serde.dumps_typed(body)
        md = get_serializable_checkpoint_metadata(config, metadata)
        request = PutRequest(
            tenant_id=self.tenant_id,
            thread_id=thread_id,
            checkpoint_ns=ns,
            checkpoint_id=checkpoint["id"],
            parent_checkpoint_id=conf.get("checkpoint_id"),
            body=Typed(type=kind, data=data),
            channel_versions={k: str(v) for k, v in checkpoint["channel_versions"].items()},
            metadata=json.loads(json.dumps(md, default=repr)),
            blobs=blobs,
        )
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
        conf = config["configurable"]
        items = []
        for idx, (channel, value) in enumerate(writes):
            kind, data = self.serde.dumps_typed(value)
            items.append(
                WriteIn(idx=WRITES_IDX_MAP.get(channel, idx), channel=channel, type=kind, data=data)
            )
        request = PutWritesRequest(
            tenant_id=self.tenant_id,
            thread_id=conf["thread_id"],
            checkpoint_ns=conf.get("checkpoint_ns", ""),
            checkpoint_id=conf["checkpoint_id"],
            task_id=task_id,
            task_path=task_path,
            writes=items,
            upsert=all(w[0] in WRITES_IDX_MAP for w in writes),
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
        return None if reply.checkpoint is None else self._tuple(reply.checkpoint, held)

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
                yield self._tuple(view)
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

    def _tuple(
        self, view: CheckpointView, held: dict[int, HeldValue] | None = None
    ) -> CheckpointTuple:
        checkpoint: Checkpoint = self.serde.loads_typed((view.body.type, view.body.data or b""))
        values = dict(checkpoint.get("channel_values") or {})
        thread = (view.thread_id, view.checkpoint_ns)
        for value in view.values:
            if value.type == "empty":
                continue
            if value.held:  # only ever for an id this request named
                assert held is not None and value.blob_id is not None
                data = held[value.blob_id].data
            else:
                data = value.data or b""
                if value.blob_id is not None and held is not None:  # a read to hold
                    self.held.put(value.blob_id, thread, value.type, data)
            values[value.channel] = self.serde.loads_typed((value.type, data))
        checkpoint["channel_values"] = values
        ids = {"thread_id": view.thread_id, "checkpoint_ns": view.checkpoint_ns}
        parent = view.parent_checkpoint_id
        return CheckpointTuple(
            config={"configurable": {**ids, "checkpoint_id": view.checkpoint_id}},
            checkpoint=checkpoint,
            metadata=view.metadata,  # type: ignore[arg-type]
            parent_config={"configurable": {**ids, "checkpoint_id": parent}} if parent else None,
            pending_writes=[
                (w.task_id, w.channel, self.serde.loads_typed((w.type, w.data or b"")))
                for w in view.writes
            ],
        )


def _inline(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= INLINE_STR
    return value is None or isinstance(value, (int, float, bool))
