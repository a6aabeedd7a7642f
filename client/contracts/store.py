"""``query.store.*``: LangGraph's long-term store (``BaseStore``) as commands of the memory
service, answered after COMMIT (client: ``engram_client.store.EngramStore``).

One ``query.store.batch`` request carries one ``abatch`` call: its get, put (a ``None``
value deletes), search and list-namespaces operations run in order, in one transaction,
and the reply holds one result per operation, in the same order. Texts to embed are
picked out of a put's value by the client (its ``IndexConfig`` fields) and sent along;
the service embeds them (``query.embed``) before it commits, so a search right after a
put finds the item. The tenant comes from the store's configuration; every row carries it
and row-level security is the second wall. Each reply is the result (``status: "ok"``) or
``contracts.errors.QueryError``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, RootModel

from contracts.envelope import TENANT_PATTERN, Contract
from contracts.errors import ERROR_DISCRIMINATOR, QueryError, Reply

STORE_BATCH_SUBJECT = "query.store.batch"
STORE_SWEEP_SUBJECT = "query.store.sweep"
MAX_OPS = 1000  # operations of one batch request
MAX_DEPTH = 64  # labels of one namespace

Label = Annotated[str, Field(min_length=1, max_length=256)]
NAMESPACE = Field(
    min_length=1,
    max_length=MAX_DEPTH,
    description="The item's namespace: labels, outermost first.",
    examples=[["users", "u-1", "memories"]],
)
KEY = Field(min_length=1, max_length=1024, description="Key within the namespace.", examples=["k1"])


class Scoped(Contract):
    tenant_id: str = Field(pattern=TENANT_PATTERN, description="Tenant.", examples=["acme"])


class IndexedText(Contract):
    """One text of a put's value to embed (one vector each; an item's score is its best)."""

    path: str = Field(
        max_length=1024,
        description="Where in the value it was found ('$': the whole value).",
        examples=["text"],
    )
    text: str = Field(max_length=100_000, description="The text.", examples=["likes tea"])


class GetOp(Contract):
    op: Literal["get"] = Field(default="get", description="Read one item.", examples=["get"])
    namespace: list[Label] = NAMESPACE
    key: str = KEY
    refresh_ttl: bool = Field(
        default=False,
        description="Restart the item's time to live (when it has one).",
        examples=[True],
    )


class PutOp(Contract):
    op: Literal["put"] = Field(
        default="put", description="Write or delete one item.", examples=["put"]
    )
    namespace: list[Label] = NAMESPACE
    key: str = KEY
    value: dict[str, Any] | None = Field(
        description="The item's value (JSON object); null deletes the item.",
        examples=[{"text": "likes tea", "importance": 0.8}],
    )
    texts: list[IndexedText] = Field(
        default_factory=list,
        max_length=256,
        description="Texts to embed for vector search (none: the item is not indexed).",
        examples=[[{"path": "text", "text": "likes tea"}]],
    )
    ttl_minutes: float | None = Field(
        default=None,
        gt=0,
        description="Time to live in minutes (null: never expires).",
        examples=[1440.0],
    )


class SearchOp(Contract):
    op: Literal["search"] = Field(
        default="search", description="Items under a namespace prefix.", examples=["search"]
    )
    namespace_prefix: list[Label] = Field(
        default_factory=list,
        max_length=MAX_DEPTH,
        description="Labels the namespace starts with (whole labels; [] every namespace).",
        examples=[["users", "u-1"]],
    )
    filter: dict[str, Any] | None = Field(
        default=None,
        description="Top-level value fields: a value means equal; an object of operators "
        "$eq, $ne, $gt, $gte, $lt, $lte compares.",
        examples=[{"color": "red", "score": {"$gte": 4}}],
    )
    query: str | None = Field(
        default=None,
        max_length=100_000,
        description="Natural-language query: items ranked by their best vector's cosine "
        "similarity (items without vectors last, score null). Null or '': newest first.",
        examples=["what does the user drink?"],
    )
    limit: int = Field(default=10, ge=1, le=1000, description="At most this many.", examples=[10])
    offset: int = Field(default=0, ge=0, description="Skip this many first.", examples=[0])
    refresh_ttl: bool = Field(
        default=False, description="Restart the found items' time to live.", examples=[False]
    )


class ListNamespacesOp(Contract):
    op: Literal["list_namespaces"] = Field(
        default="list_namespaces",
        description="Distinct namespaces of live items.",
        examples=["list_namespaces"],
    )
    prefix: list[Label] | None = Field(
        default=None,
        max_length=MAX_DEPTH,
        description="Namespaces starting with these labels ('*': any one label).",
        examples=[["users", "*"]],
    )
    suffix: list[Label] | None = Field(
        default=None,
        max_length=MAX_DEPTH,
        description="Namespaces ending with these labels ('*': any one label).",
        examples=[["memories"]],
    )
    max_depth: int | None = Field(
        default=None,
        ge=1,
        description="Cut namespaces to this many labels (then distinct).",
        examples=[2],
    )
    limit: int = Field(
        default=100, ge=1, le=10_000, description="At most this many.", examples=[100]
    )
    offset: int = Field(default=0, ge=0, description="Skip this many first.", examples=[0])


StoreOp = Annotated[GetOp | PutOp | SearchOp | ListNamespacesOp, Field(discriminator="op")]


class StoreBatchRequest(Scoped):
    agent_id: str = Field(
        default="langgraph",
        min_length=1,
        max_length=256,
        description="Agent whose engram memories the indexed items become.",
        examples=["travel-bot"],
    )
    ops: list[StoreOp] = Field(
        min_length=1,
        max_length=MAX_OPS,
        description="Operations, run in order in one transaction.",
        examples=[[{"op": "get", "namespace": ["users", "u-1"], "key": "k1"}]],
    )


class StoreItem(Contract):
    namespace: list[str] = NAMESPACE
    key: str = KEY
    value: dict[str, Any] = Field(description="The value.", examples=[{"text": "likes tea"}])
    created_at: datetime = Field(description="First written.", examples=["2026-12-07T09:00:00Z"])
    updated_at: datetime = Field(description="Last written.", examples=["2026-12-07T09:00:00Z"])
    score: float | None = Field(
        default=None,
        description="Search: cosine similarity of the best vector (null without a query).",
        examples=[0.82],
    )


class GetResult(Contract):
    op: Literal["get"] = Field(default="get", description="A get's result.", examples=["get"])
    item: StoreItem | None = Field(description="The item, or null.", examples=[None])


class PutResult(Contract):
    op: Literal["put"] = Field(default="put", description="A put's result.", examples=["put"])
    memory_id: str | None = Field(
        default=None,
        description="The engram memory the item is (indexed items), else null.",
        examples=["0b6c2f3e-6c1a-5d2e-9f00-3c2b9a0d7e11"],
    )


class SearchResult(Contract):
    op: Literal["search"] = Field(
        default="search", description="A search's result.", examples=["search"]
    )
    items: list[StoreItem] = Field(description="Best first.", examples=[[]])


class NamespacesResult(Contract):
    op: Literal["list_namespaces"] = Field(
        default="list_namespaces", description="A listing's result.", examples=["list_namespaces"]
    )
    namespaces: list[list[str]] = Field(
        description="Sorted.", examples=[[["users", "u-1", "memories"]]]
    )


StoreResult = Annotated[
    GetResult | PutResult | SearchResult | NamespacesResult, Field(discriminator="op")
]


class StoreBatchReply(Reply):
    results: list[StoreResult] = Field(
        description="One per operation, in request order (committed).", examples=[[]]
    )


class StoreSweepRequest(Scoped):
    """Delete the tenant's expired items now (reads never return them anyway)."""


class StoreSweepReply(Reply):
    deleted: int = Field(ge=0, description="Expired items deleted.", examples=[3])


class StoreBatchAnswer(RootModel[Annotated[StoreBatchReply | QueryError, ERROR_DISCRIMINATOR]]):
    """`StoreBatchReply` or `QueryError`."""


class StoreSweepAnswer(RootModel[Annotated[StoreSweepReply | QueryError, ERROR_DISCRIMINATOR]]):
    """`StoreSweepReply` or `QueryError`."""


# subject -> (request, reply union, result)
COMMANDS: dict[str, tuple[type[Contract], type[RootModel[Any]], type[Reply]]] = {
    STORE_BATCH_SUBJECT: (StoreBatchRequest, StoreBatchAnswer, StoreBatchReply),
    STORE_SWEEP_SUBJECT: (StoreSweepRequest, StoreSweepAnswer, StoreSweepReply),
}
