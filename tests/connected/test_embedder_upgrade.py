"""Upgrading across embedder/006 (sources keyed per tenant): what the previous release
stored is kept and keyed by (tenant, type, id) — the same ids then serve another tenant —
and a chunk whose tenant is not its source's fails the migration instead of being kept."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import pytest

from services.catalog import migrate
from tests.conftest import Env
from tests.connected.upgrade_fixtures import key_columns, previous_release

pytestmark = pytest.mark.connected

MODEL = "test-model"
NEW_FILE = "embedder/006_ids_per_tenant.sql"


async def source(conn: asyncpg.Connection, tenant: str, kind: str, sid: UUID) -> None:
    await conn.execute(
        """INSERT INTO embedder.sources (source_type, source_id, tenant_id, source_at,
               content_hash, text_at, event_id)
           VALUES ($1, $2, $3, now(), repeat('0', 64), now(), gen_random_uuid())""",
        kind,
        sid,
        tenant,
    )


async def chunk(conn: asyncpg.Connection, tenant: str, kind: str, sid: UUID, text: str) -> int:
    chunk_id: int = await conn.fetchval(
        """INSERT INTO embedder.chunks (tenant_id, source_type, source_id, source_at,
               chunk_index, text, content_hash)
           VALUES ($1, $2, $3, now(), 0, $4, repeat('0', 64)) RETURNING chunk_id""",
        tenant,
        kind,
        sid,
        text,
    )
    return chunk_id


async def test_sources_and_chunks_are_kept_and_keyed_per_tenant(env: Env, tmp_path: Path) -> None:
    mid, memory = uuid4(), uuid4()
    async with previous_release(env, tmp_path, "embedder", "embedder", "006") as url:
        conn = await asyncpg.connect(url)
        try:
            assert await key_columns(conn, "embedder.sources") == [["source_type", "source_id"]]
            await conn.execute(
                "INSERT INTO embedder.models (model_id, source, dimensions, max_tokens, state) "
                "VALUES ($1, 'tests', 3, 8, 'active')",
                MODEL,
            )
            await source(conn, "acme", "message", mid)
            await source(conn, "acme", "memory", memory)
            embedded = await chunk(conn, "acme", "message", mid, "acme's message")
            queued = await chunk(conn, "acme", "memory", memory, "acme's memory")
            await conn.execute(
                """INSERT INTO embedder.chunk_vectors (model_id, chunk_id, tenant_id,
                       source_type, source_at, embedding)
                   VALUES ($1, $2, 'acme', 'message', now(), '[1, 0, 0]')""",
                MODEL,
                embedded,
            )
            await conn.execute("INSERT INTO embedder.embed_queue (chunk_id) VALUES ($1)", queued)

            assert NEW_FILE in await migrate(url, ["embedder"])

            assert await key_columns(conn, "embedder.sources") == [
                ["tenant_id", "source_type", "source_id"]
            ]
            assert await key_columns(conn, "embedder.chunks", "f") == [
                ["tenant_id", "source_type", "source_id"]
            ]
            kept = await conn.fetch(
                """SELECT c.chunk_id, c.text, v.chunk_id IS NOT NULL AS vector,
                          q.chunk_id IS NOT NULL AS queued
                     FROM embedder.chunks c
                     JOIN embedder.sources s USING (tenant_id, source_type, source_id)
                     LEFT JOIN embedder.chunk_vectors v USING (chunk_id)
                     LEFT JOIN embedder.embed_queue q USING (chunk_id)
                    ORDER BY c.chunk_id"""
            )
            assert [tuple(r) for r in kept] == [
                (embedded, "acme's message", True, False),
                (queued, "acme's memory", False, True),
            ]
            # the same ids are another tenant's sources now, and each goes its own way
            await source(conn, "globex", "message", mid)
            theirs = await chunk(conn, "globex", "message", mid, "globex's message")
            await conn.execute(
                "DELETE FROM embedder.sources WHERE tenant_id = 'acme' AND source_id = $1", mid
            )
            left = await conn.fetch(
                "SELECT chunk_id, tenant_id FROM embedder.chunks ORDER BY chunk_id"
            )
            assert [tuple(r) for r in left] == [(queued, "acme"), (theirs, "globex")]
            assert await conn.fetchval("SELECT count(*) FROM embedder.chunk_vectors") == 0
            # a chunk can only point at a source of its own tenant
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                await chunk(conn, "initech", "memory", memory, "not initech's")
        finally:
            await conn.close()


async def test_a_chunk_of_another_tenant_than_its_source_fails_the_upgrade(
    env: Env, tmp_path: Path
) -> None:
    mid = uuid4()
    async with previous_release(env, tmp_path, "embedder", "embedder", "006") as url:
        conn = await asyncpg.connect(url)
        try:
            await source(conn, "acme", "message", mid)
            await chunk(conn, "globex", "message", mid, "inconsistent")  # the old key allowed it
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                await migrate(url, ["embedder"])
            # nothing of the file was applied: it runs in one transaction
            assert await key_columns(conn, "embedder.sources") == [["source_type", "source_id"]]
        finally:
            await conn.close()
