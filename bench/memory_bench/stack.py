"""Servers, databases, workers: seeding memories, publishing consolidation jobs, waiting
for them, and the CPU the workers use."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import nats
import numpy as np
from pgvector.asyncpg import register_vector

from bench._code import ROOT
from bench._figures import CpuMeter as _CpuMeter
from bench._servers import Postgres, fresh_streams, worker_login
from bench.memory_bench.generate import CLOCK, T_END, Memory
from bench.memory_bench.settings import DIMS, MODEL_ID, TENANT

# --- servers, databases, workers ---------------------------------------------------------

TEMPLATE = "bench_memory_template"
ID_SPACE = uuid.UUID("0b3c8a9e-5d3e-4a57-9f1e-6c2b7d8e9f10")


class Bench(Postgres):
    def __init__(
        self,
        admin_url: str,
        nats_url: str,
        logs: Path,
        pids: dict[str, int],
        nats_users: dict[str, str] | None = None,
    ) -> None:
        # nats_url: the NATS admin's (sets the bus up; the bench's own clients);
        # nats_users: each service's own NATS user, which its worker connects as.
        self.admin_url, self.nats_url, self.logs, self.pids = admin_url, nats_url, logs, pids
        self.nats_users = nats_users or {}

    def service_url(self, db: str, service: str) -> str:
        """What a worker of ``service`` logs in as: its own role, under row-level security."""
        return worker_login(self.url(db), service)

    async def make_template(self) -> None:
        from services.catalog import migrate

        await self.admin(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        await self.admin(f"CREATE DATABASE {TEMPLATE}")
        await migrate(self.url(TEMPLATE))  # what `engram migrate` applies

    async def clone(self, source: str = TEMPLATE, name: str | None = None) -> str:
        name = name or f"bench_mem_{uuid.uuid4().hex[:8]}"
        await self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await self.admin(f"CREATE DATABASE {name} TEMPLATE {source}")
        return name

    async def drop(self, name: str) -> None:
        await self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    async def fresh_streams(self) -> None:
        """The bus set up again, empty, as the admin (workers may not)."""
        nc = await nats.connect(self.nats_url)
        try:
            await fresh_streams(nc.jetstream())
        finally:
            await nc.close()

    def start_worker(
        self, service: str, db: str, label: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        full = {
            **os.environ,
            "NATS_URL": self.nats_users.get(service, self.nats_url),
            "DATABASE_URL": self.service_url(db, service),
            "HF_HUB_OFFLINE": "1",
            **(env or {}),
        }
        log = (self.logs / f"{label}.log").open("ab")
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "engram"), "run", service, "--log-level", "INFO"],
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )


def memory_ids(agent: str, n: int) -> list[uuid.UUID]:
    return [uuid.uuid5(ID_SPACE, f"{agent}/{i}") for i in range(n)]


async def seed(
    conn: asyncpg.Connection,
    agent: str,
    memories: Sequence[Memory],
    vectors: np.ndarray,
    seed_: int,
) -> list[uuid.UUID]:
    """The memories of one agent, straight into memory.memories (COPY, as the superuser):
    every NOT NULL column, typed content, vectors of MODEL_ID, some access history."""
    from services.memory.settings import MemorySettings

    rates = MemorySettings().decay_rates
    rng = random.Random(seed_)
    ids = memory_ids(agent, len(memories))
    records = []
    for memory_id, m, v in zip(ids, memories, vectors, strict=True):
        accessed = rng.random() < 0.3
        count = rng.randrange(1, 20) if accessed else 0
        last = (
            min(T_END, m.written_at + timedelta(hours=rng.randrange(1, 24 * 60)))
            if accessed
            else None
        )
        conversation = uuid.UUID(int=rng.getrandbits(128), version=4) if m.user_id else None
        records.append(
            (
                TENANT,
                memory_id,
                agent,
                m.user_id,
                conversation,
                m.memory_type,
                m.text,
                json.dumps(m.content),
                hashlib.sha256(m.text.encode()).digest(),
                max(1, math.ceil(len(m.text) / 4)),
                m.importance,
                rates[m.memory_type],
                count,
                last,
                m.written_at,
                m.written_at,
                MODEL_ID,
                v,
            )
        )
    await conn.copy_records_to_table(
        "memories",
        schema_name="memory",
        records=records,
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
            "access_count",
            "last_accessed_at",
            "decayed_at",
            "written_at",
            "model_id",
            "embedding",
        ],
    )
    return ids


async def finish_seed(conn: asyncpg.Connection) -> float:
    """The model's HNSW index (as the worker makes it on the first vector), then ANALYZE;
    returns the index build time."""
    started = time.perf_counter()
    await conn.execute("SET maintenance_work_mem = '512MB'")
    await conn.execute("SELECT memory.ensure_model_index($1, $2)", MODEL_ID, DIMS)
    built = time.perf_counter() - started
    await conn.execute("VACUUM ANALYZE memory.memories")
    return built


async def db_conn(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await register_vector(conn)
    return conn


def consolidate_event(agent: str, steps: Sequence[str] | None, threshold: float | None) -> Any:
    from contracts.memory_jobs import ConsolidatePayload, MemoryConsolidate, Step

    payload: dict[str, Any] = {
        "job_id": uuid.uuid4(),
        "agent_id": agent,
        "merge_threshold": threshold,
    }
    if steps is not None:
        payload["steps"] = [Step(s) for s in steps]
    return MemoryConsolidate(
        event_id=uuid.uuid4(),
        tenant_id=TENANT,
        producer="bench",
        occurred_at=CLOCK,
        payload=ConsolidatePayload(**payload),
    )


async def publish(js: Any, event: Any) -> None:
    await js.publish(event.type, event.model_dump_json().encode(), headers=event.headers())


async def wait_jobs(
    conn: asyncpg.Connection,
    job_ids: Sequence[uuid.UUID],
    worker: subprocess.Popen[bytes],
    log: Path,
    *,
    within: float,
    interval: float = 0.25,
    on_poll: Any = None,
) -> list[asyncpg.Record]:
    deadline = time.monotonic() + within
    while True:
        rows = await conn.fetch(
            "SELECT * FROM memory.jobs WHERE job_id = ANY($1::uuid[])", list(job_ids)
        )
        if on_poll is not None:
            on_poll(rows)
        if len(rows) == len(job_ids) and all(r["state"] == "done" for r in rows):
            return list(rows)
        if worker.poll() is not None:
            raise RuntimeError(f"the memory worker exited ({worker.returncode}); see {log}")
        errors = [r["last_error"] for r in rows if r["last_error"]]
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs not done in {within:.0f}s; errors: {errors[:3]}; see {log}")
        await asyncio.sleep(interval)


class CpuMeter(_CpuMeter):
    """The window opens when made; ``stop`` gives each group's CPU seconds, the cores the
    machine was busy and the cores other sessions used (see bench._figures.CpuMeter)."""

    def __init__(self, pids: dict[str, int], workers: dict[str, subprocess.Popen[bytes]]) -> None:
        super().__init__(pids, workers)
        self.start()

    def stop(self) -> dict[str, float]:
        wall, used, machine = self.measure()
        out = {f"{name}_cpu_s": round(cpu, 2) for name, cpu in used.items()}
        if machine is not None:
            out["machine_cores_busy"] = round(machine, 2)
            out["others_cores"] = round(max(0.0, machine - sum(used.values()) / wall), 2)
        return out
