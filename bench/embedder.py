#!/usr/bin/env python
"""Embedder benchmark: the bus-fed embedder against the raw model, and search at 100k chunks.

    .venv/bin/python bench/embedder.py [--texts 5000] [--runs 3] [--chunks 100000]
                                       [--queries 200] [--data-dir DIR] [--skip-search]
                                       [--keep-corpus]

Starts the embedded nats-server and PostgreSQL itself (DevStack, in a temporary folder
unless --data-dir). Per run, side by side on the same realistic chat texts:

  (a) raw: ``SentenceTransformer.encode`` of the chunk texts at the best batch size (swept
      on the first run), in this process, nothing else running;
  (b) end to end: the embedder worker (`engram run embedder`, its own process, model
      loaded and warmed) while the texts are published as chat.message.created:
      first publish -> last vector committed (polled every 0.1 s). Its model batch size is
      the one (a) found best. Also the latency of one lone message (publish -> committed).

Then search at --chunks chunks (built once; see build_corpus for how), through the
service's own SQL (logged in as engram_embedder acting as its reader, row-level security,
iterative scan, exact fallback): p50/p99 latency and recall@10 against exact search (index
scans disabled), unfiltered and tenant-filtered (a large, a medium and a small tenant);
hybrid search of the large tenant as the service runs it (vector and full-text sides at
once on two pooled connections; recall@10 of its vector side), its full-text side alone,
and query.knowledge.search end to end over NATS (with the query's encoding). Every figure
is the median of the runs. Writes bench/results/embedder.json. The worker runs this
checkout's code (PYTHONPATH), whichever checkout the venv was installed from.

--keep-corpus (with --data-dir) keeps the search corpus's database and reuses it on the
next run, migrated to the current sql/ (so a new index is measured on the same rows).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import asyncpg  # noqa: E402
import nats  # noqa: E402
import numpy as np  # noqa: E402
from pgvector import Vector  # noqa: E402
from pgvector.asyncpg import register_vector  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench._figures import pct, write_report  # noqa: E402
from bench._servers import Postgres, admin_url, fresh_streams, stop_process, worker_login  # noqa: E402
from bench.corpus import chat_texts, query_texts  # noqa: E402
from contracts.chat import MessageCreated, MessageCreatedPayload, Role  # noqa: E402
from contracts.embedding import KnowledgeFilters  # noqa: E402
from services.catalog import SERVICES, migrate  # noqa: E402
from services.embedder import gate, repo_search  # noqa: E402
from services.embedder.gate import Gate  # noqa: E402
from services.embedder.logic import candidates_for, chunk_text, content_hash  # noqa: E402
from services.embedder.model import LoadedModel, load, resolve  # noqa: E402
from services.embedder.settings import DEFAULT_MODEL, EmbedderSettings  # noqa: E402
from services.runtime.db import create_pool  # noqa: E402
from services.runtime.embedded import DevStack  # noqa: E402

console = Console()
TEMPLATE = "bench_embedder_template"
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
GOAL_RATIO, GOAL_P99_MS, GOAL_RECALL, GOAL_INT8 = 0.9, 25.0, 0.95, 1.8
SETTINGS = EmbedderSettings()


def chunk_texts(model: LoadedModel, texts: Sequence[str]) -> list[str]:
    window = model.window
    offsets = model.token_offsets(texts)
    return [
        c.text
        for t, o in zip(texts, offsets, strict=True)
        for c in chunk_text(t, o, window=window, overlap=SETTINGS.chunk_overlap_tokens)
    ]


# --- (a) raw model -------------------------------------------------------------------


def raw_rate(model: LoadedModel, texts: Sequence[str], batch_size: int) -> tuple[float, Any]:
    started = time.perf_counter()
    vectors = model.model.encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return len(texts) / (time.perf_counter() - started), vectors


def int8_quality(
    fp32: LoadedModel, int8: LoadedModel, fp32_chunks: Any, int8_chunks: Any
) -> dict[str, float]:
    """int8 against fp32 on this corpus: cosines of every chunk, and recall@10 of fp32's
    exact top 10 for the search queries (int8 queries encoded one at a time)."""
    asked = query_texts(200, seed=99)
    exact_q = np.asarray(fp32.encode(asked), dtype=np.float32)
    approx_q = np.concatenate([int8.encode_query([q]) for q in asked])
    docs32 = np.asarray(fp32_chunks, dtype=np.float32)
    mean, low = gate.agreement(int8_chunks, docs32)
    recall = gate.recall_at_10(docs32, exact_q, int8_chunks, approx_q)
    cos = np.sum(int8_chunks * docs32, axis=1)
    gate_figures = int8.runtime_info
    return {
        "chunks": len(docs32),
        "cosine_mean": mean,
        "cosine_min": low,
        "cosine_p01": float(np.percentile(cos, 1)),
        "recall@10": recall,
        "gate_corpus_recall@10": (gate_figures.recall or 0.0) if gate_figures else 0.0,
        "gate_probes_cosine_mean": (gate_figures.mean_cosine or 0.0) if gate_figures else 0.0,
        "gate_probes_cosine_min": (gate_figures.min_cosine or 0.0) if gate_figures else 0.0,
    }


def best_batch_size(model: LoadedModel, texts: Sequence[str]) -> tuple[int, dict[int, float]]:
    sample = list(texts[:600])
    raw_rate(model, sample[:64], 32)  # warm up
    rates = {bs: raw_rate(model, sample, bs)[0] for bs in (16, 32, 64, 128)}
    return max(rates, key=lambda bs: rates[bs]), rates


# --- servers, databases, worker ------------------------------------------------------


class Bench(Postgres):
    def __init__(
        self, admin_url: str, nats_url: str, logs: Path, worker_nats_url: str = ""
    ) -> None:
        # nats_url: the NATS admin's (sets the bus up; the bench's own clients);
        # worker_nats_url: the embedder's own NATS user.
        self.admin_url, self.nats_url, self.logs = admin_url, nats_url, logs
        self.worker_nats_url = worker_nats_url or nats_url

    def service_url(self, db: str) -> str:
        """What the embedder logs in as: its own role, under row-level security."""
        return worker_login(self.url(db), "embedder")

    async def fresh_db(self) -> str:
        name = f"bench_emb_{uuid.uuid4().hex[:8]}"
        await self.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return name

    async def fresh_streams(self) -> None:
        nc = await nats.connect(self.nats_url)
        js = nc.jetstream()
        await fresh_streams(js)
        await nc.close()

    def start_worker(
        self, db: str, batch_size: int, runtime: str = "torch", device: str = "cpu"
    ) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "NATS_URL": self.worker_nats_url,
            "DATABASE_URL": self.service_url(db),
            "EMBEDDER_MODEL_BATCH_SIZE": str(batch_size),
            "EMBEDDER_GPU_BATCH_SIZE": str(batch_size),
            "EMBEDDER_RUNTIME": runtime,
            "EMBEDDER_DEVICE": device,
            # The bench measures int8's speed whatever its gate says (reported beside it).
            "EMBEDDER_INT8_MIN_RECALL": "0",
            "HF_HUB_OFFLINE": "1",
            # This checkout's code, not the one the venv's editable install points at
            # (another worktree's, when the venv is shared).
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        log = (self.logs / "embedder-worker.log").open("ab")
        return subprocess.Popen(
            [
                str(Path(sys.executable).parent / "engram"),
                "run",
                "embedder",
                "--log-level",
                "WARNING",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )


async def wait_for(probe: Any, until: Any, within: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached in {within}s: {value!r}")
        await asyncio.sleep(interval)


def events_of(texts: Sequence[str], seed: int) -> list[MessageCreated]:
    rng = random.Random(seed)
    convs = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(100)]
    t0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
    return [
        MessageCreated(
            event_id=uuid.uuid4(),
            tenant_id=f"tenant-{i % 5}",
            producer="bench",
            occurred_at=t0 + timedelta(seconds=i),
            payload=MessageCreatedPayload(
                message_id=uuid.uuid4(),
                conversation_id=rng.choice(convs),
                role=Role.user if i % 2 else Role.assistant,
                content=text,
            ),
        )
        for i, text in enumerate(texts)
    ]


async def end_to_end(  # noqa: PLR0917
    bench: Bench,
    texts: Sequence[str],
    chunks: int,
    batch_size: int,
    runtime: str = "torch",
    device: str = "cpu",
) -> dict[str, float]:
    db = await bench.fresh_db()
    await bench.fresh_streams()
    worker = bench.start_worker(db, batch_size, runtime, device)
    conn = await asyncpg.connect(bench.url(db))
    nc = await nats.connect(bench.nats_url)
    js = nc.jetstream(publish_async_max_pending=5000)
    try:

        async def vectors() -> int:
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited; see {bench.logs / 'embedder-worker.log'}")
            return int(await conn.fetchval("SELECT count(*) FROM embedder.chunk_vectors"))

        async def publish(events: Sequence[MessageCreated]) -> None:
            futures = [
                await js.publish_async(e.type, e.model_dump_json().encode(), headers=e.headers())
                for e in events
            ]
            await asyncio.gather(*futures)

        # The stream keeps it until the worker is up: its vector means "loaded and warm".
        await publish(events_of(["warm-up message about a hotel by the river"], seed=1))
        await wait_for(vectors, lambda n: n >= 1, within=180)
        started = time.perf_counter()
        await publish(events_of(texts, seed=2))
        published = time.perf_counter() - started
        await wait_for(vectors, lambda n: n >= 1 + chunks, within=1800)
        elapsed = time.perf_counter() - started
        lone = []
        for i in range(10):  # one message alone, the worker idle
            before = await vectors()
            t = time.perf_counter()
            await publish(events_of([f"lone message {i} about the weather in Porto"], seed=10 + i))
            await wait_for(vectors, lambda n, b=before: n > b, within=30, interval=0.005)
            lone.append(time.perf_counter() - t)
        return {
            "rate": chunks / elapsed,
            "seconds": elapsed,
            "publish_s": published,
            "lone_p50_ms": statistics.median(lone) * 1000,
        }
    finally:
        stop_process(worker)
        await nc.close()
        await conn.close()
        await bench.admin(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


# --- search at scale -----------------------------------------------------------------


def build_corpus(basis: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """n vectors on the manifold of real embeddings: each is the normalized Dirichlet mix
    of 3 real text embeddings (weights ~ Dir(2, 1, 1)) plus a little Gaussian noise; its
    text is the text of its largest part. Tenants: 200, Zipf-like sizes (a few big)."""
    rng = np.random.default_rng(seed)
    parts = rng.integers(0, len(basis), size=(n, 3))
    weights = rng.dirichlet([2.0, 1.0, 1.0], size=n).astype(np.float32)
    vectors = np.einsum("nk,nkd->nd", weights, basis[parts])
    vectors += rng.normal(scale=0.02, size=vectors.shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sizes = 1.0 / np.arange(1, 201) ** 1.1
    tenant = rng.choice(200, size=n, p=sizes / sizes.sum())
    return (
        vectors.astype(np.float32),
        tenant,
        [int(parts[i, np.argmax(weights[i])]) for i in range(n)],
    )


async def load_corpus(
    bench: Bench,
    vectors: np.ndarray,
    tenants: np.ndarray,
    base: Sequence[int],
    texts: Sequence[str],
) -> tuple[str, float]:
    db = await bench.fresh_db()
    conn = await asyncpg.connect(bench.url(db))
    await register_vector(conn)
    n, now = len(vectors), datetime(2026, 11, 1, tzinfo=UTC)
    ids = [uuid.uuid4() for _ in range(n)]
    at = [now - timedelta(minutes=i) for i in range(n)]
    names = [f"t{t:03d}" for t in tenants]
    await conn.execute(
        "INSERT INTO embedder.models VALUES ($1, $2, 384, 256, 'active')", MODEL_ID, DEFAULT_MODEL
    )
    await conn.copy_records_to_table(
        "sources",
        schema_name="embedder",
        columns=[
            "source_type",
            "source_id",
            "tenant_id",
            "source_at",
            "content_hash",
            "text_at",
            "event_id",
        ],
        records=[("message", ids[i], names[i], at[i], "0" * 64, at[i], ids[i]) for i in range(n)],
    )
    await conn.copy_records_to_table(
        "chunks",
        schema_name="embedder",
        columns=[
            "tenant_id",
            "source_type",
            "source_id",
            "source_at",
            "chunk_index",
            "text",
            "content_hash",
        ],
        records=[
            (names[i], "message", ids[i], at[i], 0, texts[base[i]], content_hash(texts[base[i]]))
            for i in range(n)
        ],
    )
    chunk_ids = [
        r[0] for r in await conn.fetch("SELECT chunk_id FROM embedder.chunks ORDER BY chunk_id")
    ]
    await conn.copy_records_to_table(
        "chunk_vectors",
        schema_name="embedder",
        columns=["model_id", "chunk_id", "tenant_id", "source_type", "source_at", "embedding"],
        records=[
            (MODEL_ID, chunk_ids[i], names[i], "message", at[i], Vector(vectors[i]))
            for i in range(n)
        ],
    )
    started = time.perf_counter()
    await conn.execute("SET maintenance_work_mem = '1GB'")
    await conn.fetchval(
        "SELECT embedder.register_model($1, $2, 384, 256, true)", MODEL_ID, DEFAULT_MODEL
    )
    build_s = time.perf_counter() - started
    await conn.execute("VACUUM ANALYZE embedder.chunk_vectors")
    await conn.execute("VACUUM ANALYZE embedder.chunks")
    await conn.close()
    return db, build_s


async def reuse_corpus(bench: Bench, db: str) -> tuple[str, np.ndarray | None]:
    """A kept corpus migrated to the current sql/, and its chunks per tenant; or no counts
    when there is none yet."""
    if not await bench.exists(db):
        return db, None
    applied = await migrate(bench.url(db))
    conn = await asyncpg.connect(bench.url(db))
    try:
        if applied:
            console.log(f"{db}: applied {applied}")
            await conn.execute("VACUUM ANALYZE embedder.chunks")
        rows = await conn.fetch(
            "SELECT substr(tenant_id, 2)::int, count(*) FROM embedder.chunks GROUP BY 1"
        )
    finally:
        await conn.close()
    counts = np.zeros(200, dtype=np.int64)
    for tenant, n in rows:
        counts[tenant] = n
    return db, counts


async def service_conn(url: str) -> asyncpg.Connection:
    """A connection as the service's own login (``url``: Bench.service_url)."""
    conn = await asyncpg.connect(url)
    await register_vector(conn)
    return conn


def scope_of(tenant: str) -> repo_search.SearchScope:
    """What the service searches with for top_k = 10 and its default settings."""
    n = candidates_for(10)
    return repo_search.SearchScope(
        tenant_id=tenant,
        reader=SETTINGS.roles.reader,
        filters=KnowledgeFilters(),
        limit=n,
        ef_search=max(SETTINGS.ef_search, n),
        max_scan_tuples=SETTINGS.max_scan_tuples,
    )


def top10(found: Sequence[repo_search.Candidate]) -> list[int]:
    ranked = sorted((c for c in found if c.distance is not None), key=lambda c: c.distance or 0)
    return [c.chunk_id for c in ranked[:10]]


async def vector_search(
    conn: asyncpg.Connection, tenant: str | None, q: np.ndarray, *, exact: bool = False
) -> tuple[list[int], float]:
    """Top-10 chunk ids by the service's vector SQL (tenant given) or the bare index
    (None); exact: index scans disabled."""
    started = time.perf_counter()
    scope = scope_of(tenant or "*")
    async with conn.transaction():
        await repo_search.scope_search(
            conn,
            scope.tenant_id,
            reader=scope.reader,
            ef_search=scope.ef_search,
            max_scan_tuples=scope.max_scan_tuples,
        )
        if exact:
            await conn.execute(
                "SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off"
            )
        if tenant is None:  # the bare index over every tenant's rows
            await conn.execute(f"SET LOCAL ROLE {SETTINGS.roles.all_tenants}")
            rows = await conn.fetch(
                f"SELECT chunk_id FROM embedder.chunk_vectors v WHERE model_id = '{MODEL_ID}' "
                "ORDER BY (v.embedding::vector(384)) <=> $1::vector LIMIT 10",
                Vector(q),
            )
            ids = [r[0] for r in rows]
        else:
            found = await repo_search.vector_candidates(
                conn, scope, model_id=MODEL_ID, dimensions=384, query_vector=q
            )
            ids = top10(found)
    return ids, (time.perf_counter() - started) * 1000


async def hybrid_search(
    pool: asyncpg.Pool, tenant: str, q: np.ndarray | None, text: str
) -> tuple[list[int], float]:
    """As the service searches (both sides at once on two pooled connections, each in its
    own transaction), the query already encoded: the vector side's top-10 ids and the
    time."""
    started = time.perf_counter()
    found = await repo_search.candidates(
        pool,
        scope_of(tenant),
        query_vector=None if q is None else repo_search.QueryVector(MODEL_ID, 384, q),
        query_text=text,
        max_matches=SETTINGS.text_max_matches,
    )
    return top10(found), (time.perf_counter() - started) * 1000


async def search_bench(
    bench: Bench,
    *,
    db: str,
    queries: np.ndarray,
    query_texts: Sequence[str],
    tenants: dict[str, str | None],
    runs: int,
) -> dict[str, dict[str, float]]:
    conn = await service_conn(bench.service_url(db))
    pool = await create_pool(bench.service_url(db), worker=True, min_size=2, vectors=True)
    results: dict[str, dict[str, float]] = {}
    try:
        large = next(t for t in tenants.values() if t is not None)
        labels: dict[str, tuple[str | None, str]] = {k: (t, "vector") for k, t in tenants.items()}
        labels["hybrid, large tenant"] = (large, "hybrid")
        labels["full text, large tenant"] = (large, "text")
        truths: dict[str | None, list[set[int]]] = {}
        for label, (tenant, mode) in labels.items():
            if tenant not in truths:
                truths[tenant] = [
                    set((await vector_search(conn, tenant, q, exact=True))[0]) for q in queries
                ]
            per_run: list[dict[str, float]] = []
            for _ in range(runs):
                latencies, recalls = [], []
                for q, text, want in zip(queries, query_texts, truths[tenant], strict=True):
                    if mode == "vector":
                        ids, ms = await vector_search(conn, tenant, q)
                    else:  # as the service runs it: hybrid, or full text only
                        assert tenant is not None
                        ids, ms = await hybrid_search(
                            pool, tenant, q if mode == "hybrid" else None, text
                        )
                    latencies.append(ms)
                    recalls.append(len(want & set(ids)) / max(1, min(10, len(want))))
                row = {"p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99)}
                if mode != "text":
                    row["recall@10"] = statistics.mean(recalls)
                per_run.append(row)
            results[label] = {k: statistics.median(r[k] for r in per_run) for k in per_run[0]}
    finally:
        await pool.close()
        await conn.close()
    return results


async def search_over_nats(
    bench: Bench, db: str, tenant: str, texts: Sequence[str], runs: int
) -> dict[str, float]:
    """query.knowledge.search end to end: request -> reply, the query encoded by the worker."""
    worker = bench.start_worker(db, 64)
    nc = await nats.connect(bench.nats_url)
    per_run: list[dict[str, float]] = []
    try:
        body = json.dumps({"tenant_id": tenant, "text": "warm up"}).encode()
        await wait_for(lambda: _try_request(nc, body), lambda ok: ok, within=120, interval=0.5)
        for _ in range(runs):
            lat = []
            for text in texts:
                body = json.dumps({"tenant_id": tenant, "text": text}).encode()
                t = time.perf_counter()
                await nc.request("query.knowledge.search", body, timeout=10)
                lat.append((time.perf_counter() - t) * 1000)
            per_run.append({"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99)})
    finally:
        await nc.close()
        stop_process(worker)
    return {k: statistics.median(r[k] for r in per_run) for k in per_run[0]}


async def _try_request(nc: Any, body: bytes) -> bool:
    try:
        reply = await nc.request("query.knowledge.search", body, timeout=5)
    except Exception:
        return False
    return b'"ok"' in reply.data


async def corpus(
    bench: Bench, args: argparse.Namespace, basis: Any, chunks: Sequence[str]
) -> tuple[str, float | None, np.ndarray]:
    """The search corpus's database, its index build time (None if reused), and its chunks
    per tenant."""
    corpus_db = f"bench_emb_corpus_{args.chunks}"
    db, build_s, counts = "", None, None
    if args.keep_corpus:
        db, counts = await reuse_corpus(bench, corpus_db)
    if counts is None:
        vectors, tenant_idx, base = build_corpus(
            np.asarray(basis, dtype=np.float32), args.chunks, seed=3
        )
        console.log(f"loading {args.chunks} chunks ...")
        db, build_s = await load_corpus(bench, vectors, tenant_idx, base, chunks)
        counts = np.bincount(tenant_idx, minlength=200)
        if args.keep_corpus:
            await bench.admin(f"ALTER DATABASE {db} RENAME TO {corpus_db}")
            db = corpus_db
    return db, build_s, counts


# --- main ----------------------------------------------------------------------------


async def run(  # noqa: PLR0915
    args: argparse.Namespace, admin_url: str, nats_url: str, logs: Path, worker_nats_url: str
) -> dict[str, Any]:
    bench = Bench(admin_url, nats_url, logs, worker_nats_url)
    await bench.admin(f"DROP DATABASE IF EXISTS {TEMPLATE}")
    await bench.admin(f"CREATE DATABASE {TEMPLATE}")
    await migrate(bench.url(TEMPLATE))
    model = load(resolve(DEFAULT_MODEL))
    texts = chat_texts(args.texts, seed=7)
    chunks = chunk_texts(model, texts)
    console.log(
        f"{len(texts)} texts -> {len(chunks)} chunks "
        f"(median {int(statistics.median(map(len, texts)))} chars)"
    )
    basis: Any = None
    report: dict[str, Any] = {
        "texts": len(texts),
        "chunks": len(chunks),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch_threads": __import__("torch").get_num_threads(),
        },
    }
    if not args.skip_throughput:
        if args.device != "cpu":
            model = load(resolve(DEFAULT_MODEL), device=args.device, batch_size=256)
        best, sweep = best_batch_size(model, chunks)
        console.log(f"raw model.encode, texts/s by batch size: {sweep}; best {best}")
        report["batch_sweep"] = sweep
        int8 = None
        if "onnx-int8" in args.runtimes:
            int8 = load(
                resolve(DEFAULT_MODEL),
                runtime="onnx-int8",
                gate=Gate(-1, -1, -1),
                cache_dir=SETTINGS.onnx_cache_dir or None,
                batch_size=best,
            )
        runs = []
        for i in range(args.runs):
            a, basis = raw_rate(model, chunks, best)
            row: dict[str, Any] = {"a_raw": a}
            if int8 is not None:
                started = time.perf_counter()
                vectors8 = int8.encode(chunks)
                row["a_raw_int8"] = len(chunks) / (time.perf_counter() - started)
                row["raw_int8_ratio"] = row["a_raw_int8"] / a
                if i == 0:
                    report["int8_quality"] = int8_quality(model, int8, basis, vectors8)
            for runtime in args.runtimes:
                b = await end_to_end(bench, texts, len(chunks), best, runtime, args.device)
                row[f"b_{runtime}"] = b["rate"]
                row[f"ratio_{runtime}"] = b["rate"] / a
                row.update({f"b_{runtime}_{k}": v for k, v in b.items() if k != "rate"})
            runs.append(row)
            console.log(f"run {i + 1}: " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
        report["throughput_runs"] = runs
        report["throughput"] = {
            k: statistics.median(r[k] for r in runs) for k in runs[0] if k in runs[-1]
        }
        report["batch_size"] = best
        report["runtimes"] = list(args.runtimes)
        report["load_average"] = os.getloadavg()
    if not args.skip_search:
        if args.skip_throughput and not (
            args.keep_corpus and await bench.exists(f"bench_emb_corpus_{args.chunks}")
        ):
            _, basis = raw_rate(model, chunks, 64)
        queries_text = query_texts(args.queries, seed=99)
        queries = np.asarray(model.encode(queries_text), dtype=np.float32)
        db, build_s, counts = await corpus(bench, args, basis, chunks)
        order = np.argsort(-counts)
        total = int(counts.sum())

        def nearest(share: float) -> int:
            return int(order[np.argmin(np.abs(counts[order] / total - share))])

        classes: dict[str, str | None] = {"unfiltered": None}
        for label, share in (("large", 0.15), ("medium", 0.01), ("small", 0.001)):
            t = nearest(share)
            classes[f"tenant {label} ({counts[t]} chunks)"] = f"t{t:03d}"
        built = "reused" if build_s is None else f"HNSW index built in {build_s:.1f}s"
        console.log(f"corpus {db}: {built}; searching {classes}")
        report["search"] = await search_bench(
            bench, db=db, queries=queries, query_texts=queries_text, tenants=classes, runs=args.runs
        )
        large = next(t for t in classes.values() if t is not None)
        report["search"]["query.knowledge.search over NATS, large tenant"] = await search_over_nats(
            bench, db, large, queries_text[:100], args.runs
        )
        report["search_corpus"] = {
            "chunks": total,
            "index_build_s": build_s,
            "tenants": int((counts > 0).sum()),
        }
        if not args.keep_corpus:
            await bench.admin(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    return report


def show(report: dict[str, Any]) -> list[dict[str, Any]]:
    goals = []
    if "throughput" in report:
        t = report["throughput"]
        table = Table(
            title=f"Throughput, {report['chunks']} chunks of {report['texts']} chat texts "
            f"(medians of {len(report['throughput_runs'])})"
        )
        for col in ("", "texts/s", "vs (a)"):
            table.add_column(col)
        table.add_row(
            f"(a) raw model.encode (torch fp32), batch {report['batch_size']}",
            f"{t['a_raw']:.1f}",
            "1.00",
        )
        if "a_raw_int8" in t:
            table.add_row(
                "(a8) raw int8 encode", f"{t['a_raw_int8']:.1f}", f"{t['raw_int8_ratio']:.3f}"
            )
        for runtime in report.get("runtimes", ["torch"]):
            table.add_row(
                f"(b) bus-fed embedder, {runtime}, published -> committed",
                f"{t[f'b_{runtime}']:.1f}",
                f"{t[f'ratio_{runtime}']:.3f}",
            )
            table.add_row(
                f"    lone message ({runtime}), publish -> committed",
                f"{t[f'b_{runtime}_lone_p50_ms']:.0f} ms",
                "",
            )
        console.print(table)
        if "torch" in report.get("runtimes", []):
            goals.append(
                {
                    "goal": f"(b) torch >= {GOAL_RATIO} x (a)",
                    "value": round(t["ratio_torch"], 3),
                    "pass": t["ratio_torch"] >= GOAL_RATIO,
                }
            )
        if "onnx-int8" in report.get("runtimes", []):
            goals.append(
                {
                    "goal": f"(b) int8 >= {GOAL_INT8} x (a)",
                    "value": round(t["ratio_onnx-int8"], 3),
                    "pass": t["ratio_onnx-int8"] >= GOAL_INT8,
                }
            )
        if "int8_quality" in report:
            q = report["int8_quality"]
            console.print(f"int8 vs fp32 on this corpus: {q}")
            goals.append(
                {
                    "goal": "int8 recall@10 of fp32's exact top 10 >= 0.97",
                    "value": round(q["recall@10"], 3),
                    "pass": q["recall@10"] >= 0.97,
                }
            )
    if "search" in report:
        table = Table(
            title=f"Search at {report['search_corpus']['chunks']} chunks (medians of runs)"
        )
        for col in ("", "p50 ms", "p99 ms", "recall@10"):
            table.add_column(col)
        for label, r in report["search"].items():
            recall = r.get("recall@10")
            table.add_row(
                label,
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                "" if recall is None else f"{recall:.3f}",
            )
            if recall is not None:
                goals.append(
                    {
                        "goal": f"{label}: p99 <= {GOAL_P99_MS} ms",
                        "value": round(r["p99_ms"], 2),
                        "pass": r["p99_ms"] <= GOAL_P99_MS,
                    }
                )
                goals.append(
                    {
                        "goal": f"{label}: recall@10 >= {GOAL_RECALL}",
                        "value": round(recall, 3),
                        "pass": recall >= GOAL_RECALL,
                    }
                )
        console.print(table)
    for g in goals:
        console.print(f"{'[green]PASS' if g['pass'] else '[red]FAIL'}[/] {g['goal']}: {g['value']}")
    return goals


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--keep-corpus", action="store_true")
    parser.add_argument(
        "--runtimes",
        type=lambda v: v.split(","),
        default=["torch", "onnx-int8"],
        help="bus-fed runtimes to measure, comma-separated (torch, onnx, onnx-int8)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu, or cuda: raw encode and the worker on the GPU (batch sweep up to 256)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "embedder.json")
    args = parser.parse_args()
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="engram-bench-embedder-"))
    stack = DevStack(root, SERVICES)  # each service its own NATS user
    urls = stack.start()
    try:
        admin = admin_url(urls["DATABASE_URL"])
        report = asyncio.run(run(args, admin, urls["NATS_URL"], root, stack.nats_url("embedder")))
    finally:
        stack.stop()
    report["goals"] = show(report)
    report["when"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_report(args.out, report)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
