"""Answers to ``query.langgraph.*``: LangGraph's checkpointer interface as commands that
answer after COMMIT (docs/langgraph.md).

Writes run on the worker's role, each one statement (atomic alone) on a session scoped to
the request's tenant; reads on the reader role, through the langgraph read pool. Blobs
are stored as zstd deltas (``lg_delta``); the decoded newest version of each channel
stays in this replica's cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from contracts.errors import ErrorCode
from contracts.langgraph import (
    BlobIn,
    ChannelValue,
    CheckpointView,
    PutRequest,
    PutWritesRequest,
    Typed,
)
from services.checkpointer import lg_repo as sql
from services.checkpointer.lg_delta import (
    BlobCache,
    Cached,
    Encoded,
    StoredBlob,
    decode_all,
    pack_write,
)
from services.checkpointer.lg_delta import encode as encode_blob
from services.runtime.db import Connection, scope_session
from services.runtime.replies import QueryFailed

# The tenant each session of the langgraph pools is scoped to. They keep sessions (no
# RESET on release) and only these commands scope them for the session (maintenance
# scopes its transactions), so a command of the same tenant skips a round trip. An entry
# dies with its connection.

# Above this many raw bytes in one put, compress on a thread (zstd releases the GIL).
THREAD_ABOVE = 64 * 1024


class LangGraphStore:
    """The commands' shared state: the cache and the compression settings."""

    def __init__(self, *, level: int, keyframe_every: int, cache_bytes: int) -> None:
        self.level = level
        self.keyframe_every = keyframe_every
        self.cache = BlobCache(cache_bytes)

    # ---- put --------------------------------------------------------------------------

    def _bases(self, req: PutRequest, keyframes: bool) -> list[Cached | None]:
        """Each blob's delta base, looked up here on the event loop: the cache is not
        shared with the thread that may compress."""
        return [
            None
            if keyframes or blob.type == "empty"
            else self.cache.get((req.tenant_id, req.thread_id, req.checkpoint_ns, blob.channel))
            for blob in req.blobs
        ]

    def _encode(self, req: PutRequest, bases: list[Cached | None]) -> list[tuple[BlobIn, Encoded]]:
        return [
            (
                blob,
                # A delta the client made is stored as it came (its depth comes from its base).
                Encoded("delta", blob.data or b"", blob.base_id, 0)
                if blob.base_id is not None
                else encode_blob(
                    blob.data or b"", base, level=self.level, keyframe_every=self.keyframe_every
                ),
            )
            for blob, base in zip(req.blobs, bases, strict=True)
        ]

    async def put(
        self, pool: asyncpg.Pool, req: PutRequest
    ) -> tuple[int, dict[str, tuple[int, int]]]:
        """Stores the checkpoint and its new blobs in one statement; the bytes stored and
        the new blobs' (id, depth) by channel."""
        big = sum(len(b.data or b"") for b in req.blobs) > THREAD_ABOVE
        for keyframes in (False, True):
            bases = self._bases(req, keyframes)
            encoded = (
                await asyncio.to_thread(self._encode, req, bases)
                if big
                else self._encode(req, bases)
            )
            try:
                async with pool.acquire() as conn:
                    # The session's tenant, then one statement: one round trip (two for
                    # another tenant), where BEGIN ... COMMIT took six.
                    await scope_session(conn, req.tenant_id)
                    ids = await sql.insert_put(conn, req, encoded)
            except asyncpg.ForeignKeyViolationError:
                # A delta's base was deleted (prune or delete at any replica) since it was
                # cached: forget the thread here and store keyframes.
                self.cache.drop_threads(req.tenant_id, {req.thread_id})
                if any(blob.base_id is not None for blob in req.blobs):
                    raise QueryFailed(
                        ErrorCode.pruned, "a delta's base is not in this thread (any more)"
                    ) from None
                continue
            for blob, enc in encoded:
                new = ids.get((blob.channel, blob.version))
                key = (req.tenant_id, req.thread_id, req.checkpoint_ns, blob.channel)
                if blob.base_id is not None:
                    # A delta the client made (its decoded bytes never came here): the
                    # cached version is no longer the head, and the client sends a value
                    # whole when its chain is long, to be stored alone, not on that.
                    self.cache.drop(key)
                elif new is not None and blob.type != "empty":
                    self.cache.put(key, Cached(blob.version, new[0], blob.data or b"", enc.depth))
            by_channel = {channel: new for (channel, _), new in ids.items()}
            return sum(len(enc.data) for _, enc in encoded), by_channel
        raise QueryFailed(ErrorCode.unavailable, "the thread changed during the put; retry")

    # ---- reads ------------------------------------------------------------------------

    async def views(
        self,
        conn: Connection,
        tenant: str,
        rows: Sequence[asyncpg.Record],
        held: Sequence[int] = (),
    ) -> list[CheckpointView]:
        """Checkpoint rows with their decoded channel values and pending writes; values
        whose blob id is in ``held`` (one checkpoint's read) without their bytes."""
        if not rows:
            return []
        wanted = {
            (r["thread_id"], r["checkpoint_ns"], c, v)
            for r in rows
            for c, v in zip(r["channels"], r["versions"], strict=True)
        }
        values = await self._blobs(conn, tenant, wanted, held)
        return [
            CheckpointView(
                thread_id=r["thread_id"],
                checkpoint_ns=r["checkpoint_ns"],
                checkpoint_id=r["checkpoint_id"],
                parent_checkpoint_id=r["parent_checkpoint_id"],
                body=Typed(type=r["body_type"], data=r["body"]),
                metadata=orjson.loads(r["metadata"]),
                values=[
                    values[(r["thread_id"], r["checkpoint_ns"], c, v)]
                    for c, v in zip(r["channels"], r["versions"], strict=True)
                    if (r["thread_id"], r["checkpoint_ns"], c, v) in values
                ],
                writes=sql.writes_of(r),
            )
            for r in rows
        ]

    async def _blobs(
        self,
        conn: Connection,
        tenant: str,
        wanted: set[tuple[str, str, str, str]],
        held: Sequence[int],
    ) -> dict[tuple[str, str, str, str], ChannelValue]:
        if not wanted:
            return {}
        cached_ids = [
            hit.blob_id
            for hit in (self.cache.get((tenant, t, ns, c)) for t, ns, c, _ in wanted)
            if hit is not None
        ]
        cols = list(map(list, zip(*wanted, strict=True)))
        rows = await conn.fetch(sql.BLOB_CHAINS, tenant, *cols, cached_ids, list(held))
        stored = {
            r["blob_id"]: StoredBlob(r["blob_id"], r["base_id"], r["codec"], r["data"])
            for r in rows
            if r["type"] != "empty" and not r["held"]
        }
        try:
            raw = decode_all(stored, self.cache.raw_of)
        except KeyError as err:  # the cache moved on between the read and the decode
            raise QueryFailed(ErrorCode.unavailable, f"{err}; retry") from None
        out: dict[tuple[str, str, str, str], ChannelValue] = {}
        for r in rows:
            key = (r["thread_id"], r["checkpoint_ns"], r["channel"], r["version"])
            if key not in wanted:
                continue  # a base on the way
            if r["type"] == "empty":
                out[key] = ChannelValue(channel=r["channel"], type="empty", data=None)
                continue
            if r["held"]:  # the client has these bytes
                out[key] = ChannelValue(
                    channel=r["channel"], type=r["type"], blob_id=r["blob_id"], held=True
                )
                continue
            out[key] = ChannelValue(
                channel=r["channel"], type=r["type"], data=raw[r["blob_id"]], blob_id=r["blob_id"]
            )
            ck = (tenant, r["thread_id"], r["checkpoint_ns"], r["channel"])
            if self.cache.get(ck) is None:  # a base for this replica's next delta
                self.cache.put(
                    ck, Cached(r["version"], r["blob_id"], raw[r["blob_id"]], r["depth"])
                )
        return out

    async def get_tuple(
        self,
        pool: asyncpg.Pool,
        tenant: str,
        thread: str,
        ns: str,
        checkpoint_id: str | None,
        *,
        held: Sequence[int] = (),
    ) -> CheckpointView | None:
        async with pool.acquire() as conn:
            await scope_session(conn, tenant)
            if checkpoint_id is None:
                row = await conn.fetchrow(sql.LATEST, tenant, thread, ns)
            else:
                row = await conn.fetchrow(sql.ONE, tenant, thread, ns, checkpoint_id)
            views = await self.views(conn, tenant, [row] if row is not None else [], held)
        return views[0] if views else None

    async def list(
        self, pool: asyncpg.Pool, tenant: str, filters: list[Any], limit: int
    ) -> list[CheckpointView]:
        async with pool.acquire() as conn:
            await scope_session(conn, tenant)
            rows = await conn.fetch(sql.LIST, tenant, *filters, limit)
            return await self.views(conn, tenant, rows)


async def put_writes(pool: asyncpg.Pool, req: PutWritesRequest) -> int:
    ws = req.writes
    packed = [pack_write(w.data) for w in ws]
    async with pool.acquire() as conn:  # one statement: no BEGIN ... COMMIT
        await scope_session(conn, req.tenant_id)
        await conn.execute(
            sql.UPSERT_WRITES if req.upsert else sql.INSERT_WRITES,
            req.tenant_id,
            req.thread_id,
            req.checkpoint_ns,
            req.checkpoint_id,
            req.task_id,
            req.task_path,
            [w.idx for w in ws],
            [w.channel for w in ws],
            [w.type for w in ws],
            [codec for codec, _ in packed],
            [data for _, data in packed],
        )
    return len(ws)
