"""``query.langgraph.*``: the commands of LangGraph's checkpointer interface, answered by
the checkpointer service after COMMIT (client: ``engram_client.langgraph.EngramSaver``).

Core-NATS request/reply, like every query: the agent holds no database credentials, and
tenant isolation stays in the service (every key starts with ``tenant_id``; row-level
security is the second wall). Values are LangGraph's serde output, opaque to engram:
``(type, bytes)`` pairs, base64 on the wire. Each reply is the command's result
(``status: "ok"``) or ``contracts.errors.QueryError``; ``COMMANDS`` maps each subject
to its request, its reply union (``<Answer>.model_validate_json(data).root``) and its
result.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    RootModel,
    WithJsonSchema,
)

from contracts.envelope import TENANT_PATTERN, Contract
from contracts.errors import ERROR_DISCRIMINATOR, QueryError, Reply


def _from_base64(value: object) -> object:
    # FastStream validates a decoded dict (Python mode), where pydantic would take a str
    # as its UTF-8 bytes: decode here, in both modes.
    if isinstance(value, str):
        try:
            # binascii's strict mode: as strict as b64decode(validate=True), 10x faster.
            return binascii.a2b_base64(value, strict_mode=True)
        except binascii.Error as err:
            raise ValueError(f"not base64: {err}") from None
    return value


B64 = Annotated[
    bytes,
    BeforeValidator(_from_base64),
    PlainSerializer(lambda b: base64.b64encode(b).decode(), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]
ID_EX = "1f0c6b2e-8a4d-6f3e-8001-3c2b9a0d7e11"
THREAD = Field(min_length=1, max_length=512, description="LangGraph thread.", examples=["t-42"])
NS = Field(
    default="",
    max_length=1024,
    description="Checkpoint namespace ('' the root graph).",
    examples=[""],
)


class Scoped(Contract):
    tenant_id: str = Field(pattern=TENANT_PATTERN, description="Tenant.", examples=["acme"])


class Typed(Contract):
    """One serialized value: LangGraph serde's ``dumps_typed`` output."""

    type: str = Field(description="Serde type tag ('empty': no value).", examples=["msgpack"])
    data: B64 | None = Field(default=None, description="The bytes, base64.", examples=["kqE="])


class BlobIn(Typed):
    channel: str = Field(description="Channel name.", examples=["messages"])
    version: str = Field(description="The channel's version (as text).", examples=["2"])
    base_id: int | None = Field(
        default=None,
        ge=1,
        description="Set: `data` is not the value but a zstd frame compressed with the bytes of "
        "blob `base_id` (an earlier version of this channel in this thread, by its row id) "
        "as raw-content dictionary; the service stores it as it came. A base that is not "
        "such a row any more is answered `pruned`: send the value itself.",
        examples=[None],
    )
    raw_bytes: int | None = Field(
        default=None,
        ge=0,
        description="With `base_id`: the size of the value the frame decodes to.",
        examples=[None],
    )


class ChannelValue(Typed):
    channel: str = Field(description="Channel name.", examples=["messages"])
    blob_id: int | None = Field(
        default=None,
        description="The stored version's row id: a version's bytes never change under one "
        "id, so a client may keep them by it (see GetTupleRequest.held).",
        examples=[1042],
    )
    held: bool = Field(
        default=False,
        description="`data` left out: the request said the client holds `blob_id`.",
        examples=[False],
    )


class WriteIn(Typed):
    idx: int = Field(description="Index (negative for special channels).", examples=[0])
    channel: str = Field(description="Channel written.", examples=["messages"])


class PendingWrite(WriteIn):
    task_id: str = Field(description="Task that wrote it.", examples=["task-1"])
    task_path: str = Field(default="", description="Task path (sort order).", examples=[""])


class CheckpointView(Contract):
    thread_id: str = THREAD
    checkpoint_ns: str = NS
    checkpoint_id: str = Field(description="Checkpoint id (uuid6).", examples=[ID_EX])
    parent_checkpoint_id: str | None = Field(
        default=None, description="Parent checkpoint.", examples=[None]
    )
    body: Typed = Field(
        description="The checkpoint without its channel values stored as blobs.",
        examples=[{"type": "msgpack", "data": "gA=="}],
    )
    metadata: dict[str, Any] = Field(description="Checkpoint metadata.", examples=[{"step": 1}])
    values: list[ChannelValue] = Field(
        default_factory=list, description="Channel values (blobs), decoded.", examples=[[]]
    )
    writes: list[PendingWrite] = Field(
        default_factory=list, description="Pending writes of this checkpoint.", examples=[[]]
    )


# ---- commands -----------------------------------------------------------------------


class PutRequest(Scoped):
    thread_id: str = THREAD
    checkpoint_ns: str = NS
    checkpoint_id: str = Field(description="The new checkpoint's id.", examples=[ID_EX])
    parent_checkpoint_id: str | None = Field(
        default=None, description="The checkpoint it follows.", examples=[None]
    )
    body: Typed = Field(
        description="The checkpoint, without the values in `blobs`.",
        examples=[{"type": "msgpack", "data": "gA=="}],
    )
    channel_versions: dict[str, str] = Field(
        description="Every channel's version (text): the blobs this checkpoint reads.",
        examples=[{"messages": "2"}],
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Metadata (filterable).", examples=[{"step": 1}]
    )
    blobs: list[BlobIn] = Field(
        default_factory=list, description="New channel versions' values.", examples=[[]]
    )


class PutReply(Reply):
    checkpoint_id: str = Field(description="Stored, committed.", examples=[ID_EX])
    stored_bytes: int = Field(description="Bytes the new blobs took.", examples=[120])
    blob_ids: dict[str, int] = Field(
        default_factory=dict,
        description="Row id of each new blob, by channel (a version stored before: absent).",
        examples=[{"messages": 1042}],
    )
    depths: dict[str, int] = Field(
        default_factory=dict,
        description="Each new blob's depth, by channel: deltas since a value stored alone "
        "(0: it is one). A client that sends deltas (BlobIn.base_id) keeps its chains short "
        "with it.",
        examples=[{"messages": 3}],
    )


class PutWritesRequest(Scoped):
    thread_id: str = THREAD
    checkpoint_ns: str = NS
    checkpoint_id: str = Field(description="Checkpoint they belong to.", examples=[ID_EX])
    task_id: str = Field(description="Task that wrote them.", examples=["task-1"])
    task_path: str = Field(default="", description="Task path.", examples=[""])
    writes: list[WriteIn] = Field(description="The writes.", examples=[[]])
    upsert: bool = Field(
        default=False,
        description="Replace existing (task, idx) rows (special channels), else keep them.",
        examples=[False],
    )


class GetTupleRequest(Scoped):
    thread_id: str = THREAD
    checkpoint_ns: str = NS
    checkpoint_id: str | None = Field(
        default=None, description="This checkpoint (default: the newest).", examples=[None]
    )
    held: list[int] = Field(
        default_factory=list,
        max_length=4096,
        description="Blob ids whose bytes the client holds: such a value comes back "
        "`held`, without its data.",
        examples=[[1041, 1042]],
    )


class GetTupleReply(Reply):
    checkpoint: CheckpointView | None = Field(
        description="The checkpoint, or null when there is none.", examples=[None]
    )


class ListRequest(Scoped):
    thread_id: str | None = Field(
        default=None, description="One thread (default: every thread).", examples=["t-42"]
    )
    checkpoint_ns: str | None = Field(
        default=None, description="One namespace (default: all).", examples=[""]
    )
    checkpoint_id: str | None = Field(default=None, description="One id.", examples=[None])
    filter: dict[str, Any] | None = Field(
        default=None, description="Metadata must contain this (jsonb @>).", examples=[None]
    )
    before: str | None = Field(
        default=None, description="Only ids below this (cursor).", examples=[None]
    )
    limit: int | None = Field(default=None, ge=1, description="At most this many.", examples=[10])


class ListReply(Reply):
    items: list[CheckpointView] = Field(
        default_factory=list, description="Newest first.", examples=[[]]
    )
    size_limited: bool = Field(
        default=False,
        description="More matched than fit in one message: ask again with `before` set to "
        "the last item's checkpoint_id.",
        examples=[False],
    )


class DeleteThreadRequest(Scoped):
    thread_id: str = THREAD


class DeleteForRunsRequest(Scoped):
    run_ids: list[str] = Field(max_length=1000, description="metadata.run_id", examples=[["r"]])


class CopyThreadRequest(Scoped):
    source_thread_id: str = THREAD
    target_thread_id: str = THREAD


class PruneRequest(Scoped):
    thread_ids: list[str] = Field(max_length=1000, description="Threads.", examples=[["t-42"]])
    strategy: Literal["keep_latest", "delete"] = Field(
        default="keep_latest",
        description="keep_latest: the newest checkpoint of each namespace; delete: all.",
        examples=["keep_latest"],
    )


class DoneReply(Reply):
    checkpoints: int = Field(description="Checkpoints deleted or copied.", examples=[3])


class PutAnswer(RootModel[Annotated[PutReply | QueryError, ERROR_DISCRIMINATOR]]):
    """`PutReply` or `QueryError`."""


class GetTupleAnswer(RootModel[Annotated[GetTupleReply | QueryError, ERROR_DISCRIMINATOR]]):
    """`GetTupleReply` or `QueryError`."""


class ListAnswer(RootModel[Annotated[ListReply | QueryError, ERROR_DISCRIMINATOR]]):
    """`ListReply` or `QueryError`."""


class DoneAnswer(RootModel[Annotated[DoneReply | QueryError, ERROR_DISCRIMINATOR]]):
    """`DoneReply` or `QueryError`."""


# subject -> (request, reply union, result)
COMMANDS: dict[str, tuple[type[Contract], type[RootModel[Any]], type[Reply]]] = {
    "query.langgraph.put": (PutRequest, PutAnswer, PutReply),
    "query.langgraph.put_writes": (PutWritesRequest, DoneAnswer, DoneReply),
    "query.langgraph.get_tuple": (GetTupleRequest, GetTupleAnswer, GetTupleReply),
    "query.langgraph.list": (ListRequest, ListAnswer, ListReply),
    "query.langgraph.delete_thread": (DeleteThreadRequest, DoneAnswer, DoneReply),
    "query.langgraph.delete_for_runs": (DeleteForRunsRequest, DoneAnswer, DoneReply),
    "query.langgraph.copy_thread": (CopyThreadRequest, DoneAnswer, DoneReply),
    "query.langgraph.prune": (PruneRequest, DoneAnswer, DoneReply),
}
