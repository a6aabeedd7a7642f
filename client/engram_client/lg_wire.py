"""``EngramSaver``'s wire form: LangGraph's checkpoints and writes as the checkpointer's
requests, and a checkpoint the service sends back as LangGraph's ``CheckpointTuple``;
values serialized with LangGraph's serde. No I/O: the saver sends and receives them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from contracts.langgraph import (
    BlobIn,
    CheckpointView,
    PutRequest,
    PutWritesRequest,
    Typed,
    WriteIn,
)
from engram_client.lg_held import HeldBlobs, HeldValue

# Inline in the checkpoint body, as the stock saver does: small primitives only (a long
# string is a blob, so it is stored once per version, as a delta).
INLINE_STR = 256


def put_request(
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    new_versions: ChannelVersions,
    *,
    tenant_id: str,
    serde: SerializerProtocol,
) -> PutRequest:
    """The checkpoint's body with its small values inline, and each new channel version
    as a blob (its value whole: the saver may make deltas of them)."""
    conf = config["configurable"]
    thread_id, ns = conf["thread_id"], conf.get("checkpoint_ns", "")
    body = checkpoint.copy()
    values = dict(checkpoint["channel_values"])
    body["channel_values"] = {k: v for k, v in values.items() if _inline(v)}
    blobs = []
    for channel, version in new_versions.items():
        if channel in body["channel_values"]:
            continue
        kind, data = serde.dumps_typed(values[channel]) if channel in values else ("empty", b"")
        blobs.append(BlobIn(channel=channel, version=str(version), type=kind, data=data))
    kind, data = serde.dumps_typed(body)
    md = get_serializable_checkpoint_metadata(config, metadata)
    return PutRequest(
        tenant_id=tenant_id,
        thread_id=thread_id,
        checkpoint_ns=ns,
        checkpoint_id=checkpoint["id"],
        parent_checkpoint_id=conf.get("checkpoint_id"),
        body=Typed(type=kind, data=data),
        channel_versions={k: str(v) for k, v in checkpoint["channel_versions"].items()},
        metadata=json.loads(json.dumps(md, default=repr)),
        blobs=blobs,
    )


def put_writes_request(
    config: RunnableConfig,
    writes: Sequence[tuple[str, Any]],
    task_id: str,
    task_path: str,
    *,
    tenant_id: str,
    serde: SerializerProtocol,
) -> PutWritesRequest:
    conf = config["configurable"]
    items = []
    for idx, (channel, value) in enumerate(writes):
        kind, data = serde.dumps_typed(value)
        items.append(
            WriteIn(idx=WRITES_IDX_MAP.get(channel, idx), channel=channel, type=kind, data=data)
        )
    return PutWritesRequest(
        tenant_id=tenant_id,
        thread_id=conf["thread_id"],
        checkpoint_ns=conf.get("checkpoint_ns", ""),
        checkpoint_id=conf["checkpoint_id"],
        task_id=task_id,
        task_path=task_path,
        writes=items,
        upsert=all(w[0] in WRITES_IDX_MAP for w in writes),
    )


def checkpoint_tuple(
    serde: SerializerProtocol,
    holder: HeldBlobs,
    view: CheckpointView,
    held: dict[int, HeldValue] | None = None,
) -> CheckpointTuple:
    """``view`` as LangGraph's tuple. ``held``: the values the request named as held (their
    bytes come from there, not the reply); with it, each value read is held in ``holder``."""
    checkpoint: Checkpoint = serde.loads_typed((view.body.type, view.body.data or b""))
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
                holder.put(value.blob_id, thread, value.type, data)
        values[value.channel] = serde.loads_typed((value.type, data))
    checkpoint["channel_values"] = values
    ids = {"thread_id": view.thread_id, "checkpoint_ns": view.checkpoint_ns}
    parent = view.parent_checkpoint_id
    return CheckpointTuple(
        config={"configurable": {**ids, "checkpoint_id": view.checkpoint_id}},
        checkpoint=checkpoint,
        metadata=view.metadata,  # type: ignore[arg-type]
        parent_config={"configurable": {**ids, "checkpoint_id": parent}} if parent else None,
        pending_writes=[
            (w.task_id, w.channel, serde.loads_typed((w.type, w.data or b""))) for w in view.writes
        ],
    )


def _inline(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= INLINE_STR
    return value is None or isinstance(value, (int, float, bool))
