"""``EngramStore``: LangGraph's long-term store (``BaseStore``) backed by engram's memory
service.

    async with EngramStore.connect(url, tenant_id="acme", index={"fields": ["text"]}) as store:
        graph = builder.compile(store=store)

Each ``abatch`` is one ``query.store.batch`` request; the memory service runs its
operations in order in one transaction and answers after COMMIT (read-your-writes, for
every store on any replica). Texts to index are picked out of each value here, with
LangGraph's own path syntax (``IndexConfig.fields``, ``put(index=[...])``); the service
embeds them with engram's embedder, whatever ``IndexConfig.embed`` says. Indexed items
are engram memories too (docs/langgraph.md, "EngramStore").
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from contextlib import suppress
from typing import Any

from langgraph.store.base import (
    GetOp,
    IndexConfig,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
)
from langgraph.store.base.batch import AsyncBatchedBaseStore
from langgraph.store.base.embed import get_text_at_path, tokenize_path
from nats.aio.client import Client as NatsClient

from contracts import store as wire
from contracts.envelope import Contract
from engram_client.asking import ask
from engram_client.connect import OwnsConnection
from engram_client.lg_blocking import from_other_thread
from engram_client.options import Retry

DEFAULT_FIELDS = ["$"]  # LangGraph's default: the whole value, as JSON text


def index_texts(value: Mapping[str, Any], fields: list[str]) -> list[wire.IndexedText]:
    """The texts of ``value`` at ``fields`` (LangGraph paths), named as PostgresStore names
    them: the path, with ``.<i>`` when a path yields several texts."""
    out: list[wire.IndexedText] = []
    for path in fields:
        # '$' is the whole value as JSON (LangGraph handles it untokenized).
        texts = get_text_at_path(value, path if path == "$" else tokenize_path(path))
        for i, text in enumerate(texts):
            name = f"{path}.{i}" if len(texts) > 1 else path
            out.append(wire.IndexedText(path=name, text=text))
    return out


def match_paths(op: ListNamespacesOp) -> tuple[list[str] | None, list[str] | None]:
    prefix: list[str] | None = None
    suffix: list[str] | None = None
    for condition in op.match_conditions or ():
        if condition.match_type == "prefix":
            prefix = list(condition.path)
        else:
            suffix = list(condition.path)
    return prefix, suffix


class EngramStore(AsyncBatchedBaseStore, OwnsConnection):
    """As LangGraph's AsyncPostgresStore: the calls made in one tick of the event loop
    (``aget``, ``aput``, ...) are coalesced into one ``abatch`` (one request), and the
    next batch goes when its answer is in. One failing operation (e.g. an unknown filter
    operator) fails the calls coalesced with it.

    ``EngramStore(nc, tenant_id=...)`` over a connection the caller owns, or ``async with
    EngramStore.connect(url, tenant_id=..., **options)`` on its own; with
    ``ttl={"sweep_interval_minutes": ...}`` that one sweeps expired items meanwhile."""

    supports_ttl = True

    def __init__(
        self,
        nc: NatsClient,
        *,
        tenant_id: str,
        agent_id: str = "langgraph",
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        timeout_s: float = 10.0,
        attempts: int = 3,
    ) -> None:
        """``index``: items are embedded (by engram's embedder) at ``index["fields"]``
        (default ``["$"]``); ``dims`` and ``embed`` are not used. Without it, nothing is
        indexed and ``search(query=...)`` ranks by recency, as PostgresStore does.
        ``agent_id``: the agent whose semantic memories indexed items become."""
        super().__init__()
        self.nc = nc
        self.tenant_id = tenant_id
        self.agent_id = agent_id
        self.index_config = index
        self.fields = list((index or {}).get("fields") or DEFAULT_FIELDS)
        self.ttl_config = ttl
        # A command is safe to repeat (puts upsert, writes keep the first, deletes repeat).
        self.retry = Retry(attempts=attempts, timeout_s=timeout_s, base_s=0.1)
        self._sweeper: asyncio.Task[None] | None = None

    async def _opened(self) -> None:
        # ``connect(..., ttl={"sweep_interval_minutes": ...})``: sweep while connected.
        if (self.ttl_config or {}).get("sweep_interval_minutes"):
            await self.start_ttl_sweeper()

    async def _closing(self) -> None:
        await self.stop_ttl_sweeper()
        if self._task is not None:  # the coalescing task of AsyncBatchedBaseStore
            self._task.cancel()

    # ---- requests -----------------------------------------------------------------------

    async def _ask(self, subject: str, request: Contract) -> Any:
        body = request.model_dump_json().encode()
        return await ask(self.nc, subject, body, wire.COMMANDS[subject][1], self.retry)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        if not ops:
            return []
        results: list[Result] = []
        # One request per MAX_OPS operations (a larger abatch is several transactions).
        for start in range(0, len(ops), wire.MAX_OPS):
            chunk = ops[start : start + wire.MAX_OPS]
            request = wire.StoreBatchRequest(
                tenant_id=self.tenant_id,
                agent_id=self.agent_id,
                ops=[self._wire_op(op) for op in chunk],
            )
            reply = await self._ask(wire.STORE_BATCH_SUBJECT, request)
            results.extend(_result(r) for r in reply.results)
        return results

    def _wire_op(self, op: Op) -> wire.StoreOp:
        if isinstance(op, GetOp):
            return wire.GetOp(namespace=list(op.namespace), key=op.key, refresh_ttl=op.refresh_ttl)
        if isinstance(op, PutOp):
            texts: list[wire.IndexedText] = []
            if op.value is not None and self.index_config is not None and op.index is not False:
                fields = self.fields if op.index is None else list(op.index)
                texts = index_texts(op.value, fields)
            return wire.PutOp(
                namespace=list(op.namespace),
                key=op.key,
                value=op.value,
                texts=texts,
                ttl_minutes=op.ttl,
            )
        if isinstance(op, SearchOp):
            return wire.SearchOp(
                namespace_prefix=list(op.namespace_prefix),
                filter=op.filter,
                # Without an index there are no vectors: a query ranks nothing.
                query=op.query if self.index_config is not None else None,
                limit=op.limit,
                offset=op.offset,
                refresh_ttl=op.refresh_ttl,
            )
        if isinstance(op, ListNamespacesOp):
            prefix, suffix = match_paths(op)
            return wire.ListNamespacesOp(
                prefix=prefix,
                suffix=suffix,
                max_depth=op.max_depth,
                limit=op.limit,
                offset=op.offset,
            )
        raise TypeError(f"unknown store operation {op!r}")

    # ---- TTL ----------------------------------------------------------------------------

    async def asweep_ttl(self) -> int:
        """Delete this tenant's expired items now; how many. (Reads never return an
        expired item, swept or not.)"""
        reply = await self._ask(
            wire.STORE_SWEEP_SUBJECT, wire.StoreSweepRequest(tenant_id=self.tenant_id)
        )
        return int(reply.deleted)

    async def start_ttl_sweeper(self, sweep_interval_minutes: float | None = None) -> None:
        minutes = sweep_interval_minutes or (self.ttl_config or {}).get("sweep_interval_minutes")
        if self._sweeper is not None or not minutes:
            return

        async def sweep() -> None:
            while True:
                await asyncio.sleep(float(minutes) * 60)
                with suppress(Exception):  # a failed sweep is retried at the next interval
                    await self.asweep_ttl()

        self._sweeper = asyncio.create_task(sweep())

    async def stop_ttl_sweeper(self) -> None:
        task, self._sweeper = self._sweeper, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    # ---- sync interface: on the store's loop, from another thread ---------------------------

    def sweep_ttl(self) -> int:
        return from_other_thread(
            self._loop, self.asweep_ttl(), "from the store's own loop: `await store.asweep_ttl()`"
        )


def _item(item: wire.StoreItem, searched: bool) -> Item:
    ns = tuple(item.namespace)
    if searched:
        return SearchItem(ns, item.key, item.value, item.created_at, item.updated_at, item.score)
    return Item(
        namespace=ns,
        key=item.key,
        value=item.value,
        created_at=item.created_at,
        updated_at=item.updated_at,
    )


def _result(
    result: wire.GetResult | wire.PutResult | wire.SearchResult | wire.NamespacesResult,
) -> Result:
    if isinstance(result, wire.GetResult):
        return None if result.item is None else _item(result.item, False)
    if isinstance(result, wire.SearchResult):
        return [_item(i, True) for i in result.items]
    if isinstance(result, wire.NamespacesResult):
        return [tuple(ns) for ns in result.namespaces]
    return None
