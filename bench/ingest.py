#!/usr/bin/env python
"""Ingest benchmark: engram's ingest worker against a naive consumer and raw limits.

    .venv/bin/python bench/ingest.py [--events 100000] [--runs 3] [--data-dir DIR] [--quick]

Starts the embedded nats-server and PostgreSQL itself (services.runtime.embedded.DevStack,
in a temporary folder unless --data-dir), builds N realistic ``chat.message.created``
events once (contracts.chat models, serialized once), and per run, on fresh streams and
fresh databases cloned from a migrated template, measures side by side:

  (a)  engram ingest worker (`engram run ingest`, a separate process): pre-published
       backlog -> every row committed; also with the publisher running concurrently.
  (b)  naive consumer: a FastStream JetStream push subscriber (a separate process), one
       transaction per message (conversation placeholder INSERT + message INSERT), acked
       after the handler returns.
  (c)  raw limits: nats-py pull (fetch 500) + ack of the same backlog, no database; and
       asyncpg COPY of the same rows into a scratch table shaped like ingest.messages.
  (d)  latency: the worker running, a steady 1,000 events/s for ~10 s; per event
       "row visible to a poller" - "publish call".

Prints a table per run, a summary of medians with ratios and goals, and writes JSON
(bench/results/ingest.json). See bench/README.md for how to read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH, so a snapshot there wins

import asyncpg  # noqa: E402
import nats  # noqa: E402
from nats.js import JetStreamContext  # noqa: E402
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy  # noqa: E402
from rich.progress import (  # noqa: E402
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table  # noqa: E402

from bench import _code, _figures, _script, _servers  # noqa: E402
from bench._code import SNAPSHOT_ENV  # noqa: E402
from bench._figures import loadavg, percentile  # noqa: E402
from bench._latency import Outgoing, steady_publish  # noqa: E402
from bench._servers import (  # noqa: E402
    Postgres,
    admin_url,
    consumer_info,
    engram_cmd,
    fresh_streams,
    start_process,
    stop_process,
    wait_consumer,
    worker_login,
)
from contracts.chat import MessageCreated, MessageCreatedPayload, MessageMetadata, Role  # noqa: E402

SUBJECT = "chat.message.created"
TEMPLATE_DB = "bench_template"
GOAL_EPS = 10_000.0
GOAL_VS_NAIVE = 10.0
GOAL_VS_PULL = 0.6
GOAL_P99_MS = 50.0

console = _script.console()


# --------------------------------------------------------------------------------------
# Realistic chat events
# --------------------------------------------------------------------------------------

VOCAB = """
the a to and of in is it you that for on with this be are can as not have was at or if
your from but we my they what all will do so there an about would one out up when which
their more time just like how some could them other than then now only its also use new
first work way because any these give day most us need find here thing many well very
hotel river booking flight tomorrow morning evening price cheaper option review summary
table column query index database migration deploy release version error stack trace
function class method return value argument parameter config setting token model prompt
answer question context memory agent session conversation message file upload document
meeting schedule calendar reminder invoice payment refund order shipping delivery address
recipe ingredient oven minutes salt garlic tomato pasta sauce bake serve weekend trip
museum ticket train station airport gate luggage passport visa weather forecast rain sun
budget estimate quarter revenue growth customer churn dashboard metric latency throughput
python rust javascript typescript postgres redis kafka nats kubernetes docker container
please thanks sure great perfect exactly actually probably maybe definitely honestly
""".split()  # noqa: SIM905
UNICODE_BITS = [
    "café",
    "naïve",
    "São Paulo",
    "Zürich",
    "jalapeño",
    "😊",
    "👍",
    "→",
    "€120",
    "日本語",
    "Ελληνικά",
    "—",
    "“quoted”",
]
CODE_SNIPPETS = [
    "```python\nasync def handler(msg):\n    event = decode(msg.data)\n    await store(event)\n```",
    "```sql\nSELECT conversation_id, count(*) FROM messages\n"
    " GROUP BY 1 ORDER BY 2 DESC LIMIT 10;\n```",
    "```bash\nkubectl rollout restart deployment/ingest -n engram\n```",
    '```json\n{"status": "ok", "items": [1, 2, 3], "next": null}\n```',
]
AGENTS = ["travel-bot", "support-agent", "code-helper", "cooking-assistant", "analyst"]
MODELS = ["gpt-4.1", "claude-sonnet-4", "llama-3.3-70b", "mistral-large"]


class TextMaker:
    """Sentences from a chat-like vocabulary; lengths chosen by role."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.sentences = [self._sentence() for _ in range(4000)]

    def _sentence(self) -> str:
        rng = self.rng
        words = [rng.choice(VOCAB) for _ in range(rng.randint(4, 22))]
        if rng.random() < 0.08:
            words.insert(rng.randrange(len(words)), rng.choice(UNICODE_BITS))
        if rng.random() < 0.1:
            words.insert(rng.randrange(len(words)), str(rng.randint(2, 2026)))
        text = " ".join(words)
        return text[0].upper() + text[1:] + rng.choice([".", ".", ".", "?", "!", ":"])

    def text(self, length: int, code: bool) -> str:
        rng = self.rng
        parts: list[str] = []
        total = 0
        while total < length:
            if code and rng.random() < 0.15:
                piece = rng.choice(CODE_SNIPPETS)
            elif parts and rng.random() < 0.12:
                piece = "\n\n" + rng.choice(self.sentences)
            else:
                piece = rng.choice(self.sentences)
            parts.append(piece)
            total += len(piece) + 1
        text = " ".join(parts)
        if len(text) > length:
            cut = text.rfind(" ", 0, length)
            text = text[: cut if cut >= 20 else length]
        return text.strip().ljust(20, ".")


def _length(rng: random.Random, median: float, sigma: float) -> int:
    return int(min(2000, max(20, rng.lognormvariate(math.log(median), sigma))))


@dataclass
class _Conv:
    conversation_id: uuid.UUID
    tenant: str
    user: str
    agent: str
    at: datetime
    last: uuid.UUID | None = None
    turn: int = 0


def build_events(
    n: int, *, seed: int = 7, conversations: int = 300, tenants: int = 6
) -> list[MessageCreated]:
    """N chat.message.created events over a few hundred conversations, in a realistic
    interleaving: busy and quiet conversations, user/assistant turns (some tool calls),
    replies linked by parent_message_id, token counts and model metadata."""
    rng = random.Random(seed)
    texts = TextMaker(rng)
    base = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

    def uid() -> uuid.UUID:
        return uuid.UUID(int=rng.getrandbits(128), version=4)

    convs = [
        _Conv(
            uid(),
            f"tenant-{i % tenants}",
            f"u-{rng.randrange(100_000)}",
            rng.choice(AGENTS),
            base + timedelta(seconds=rng.randrange(3600)),
        )
        for i in range(conversations)
    ]
    # Some chats are much busier than others.
    cum_weights = list(itertools.accumulate(1.0 / (i + 1) ** 0.6 for i in range(conversations)))
    events: list[MessageCreated] = []
    for _ in range(n):
        c = rng.choices(convs, cum_weights=cum_weights)[0]
        step = c.turn % 4
        if step in (0, 2):
            role = Role.user
        elif rng.random() < 0.15:
            role = Role.tool
        else:
            role = Role.assistant
        c.turn += 1
        c.at += timedelta(seconds=rng.uniform(1, 90))
        if role is Role.user:
            content = texts.text(_length(rng, 90, 0.9), code=False)
            meta = MessageMetadata(
                tokens=max(1, len(content) // 4),
                client=rng.choice(["web", "ios", "android", "slack"]),
            )
            sender = {"sender_user_id": c.user}
        elif role is Role.tool:
            content = texts.text(_length(rng, 300, 0.8), code=True)
            meta = MessageMetadata(tokens=max(1, len(content) // 4), tool="search")
            sender = {"sender_agent_id": c.agent}
        else:
            content = texts.text(_length(rng, 650, 0.7), code=rng.random() < 0.3)
            meta = MessageMetadata(
                tokens=max(1, len(content) // 4),
                model=rng.choice(MODELS),
                latency_ms=round(rng.uniform(200, 4000), 1),
            )
            sender = {"sender_agent_id": c.agent}
        message_id = uid()
        events.append(
            MessageCreated(
                event_id=uid(),
                occurred_at=c.at,
                tenant_id=c.tenant,
                producer="chat-api@bench",
                correlation_id=c.conversation_id,
                payload=MessageCreatedPayload(
                    message_id=message_id,
                    conversation_id=c.conversation_id,
                    role=role,
                    content=content,
                    metadata=meta,
                    parent_message_id=c.last,
                    **sender,
                ),
            )
        )
        c.last = message_id
    return events


@dataclass(frozen=True)
class Wire:
    subject: str
    data: bytes
    headers: dict[str, str]


def serialize(events: Sequence[MessageCreated]) -> list[Wire]:
    return [Wire(e.type, e.model_dump_json().encode(), e.headers()) for e in events]


COPY_COLUMNS = (
    "message_id",
    "tenant_id",
    "conversation_id",
    "session_id",
    "parent_message_id",
    "role",
    "content",
    "content_type",
    "metadata",
    "tokens",
    "model",
    "sender_user_id",
    "sender_agent_id",
    "created_at",
)


def copy_records(events: Sequence[MessageCreated]) -> list[tuple[Any, ...]]:
    rows = []
    for e in events:
        p = e.payload
        rows.append(
            (
                p.message_id,
                e.tenant_id,
                p.conversation_id,
                p.session_id,
                p.parent_message_id,
                p.role.value,
                p.content,
                p.content_type.value,
                json.dumps(p.metadata.model_dump(exclude_none=True)),
                p.metadata.tokens,
                p.metadata.model,
                p.sender_user_id,
                p.sender_agent_id,
                e.occurred_at,
            )
        )
    return rows


# --------------------------------------------------------------------------------------
# The naive consumer (runs in its own process: `python bench/ingest.py _naive`)
# --------------------------------------------------------------------------------------

NAIVE_TENANT = "SELECT set_config('engram.tenant_id', $1, true)"
NAIVE_PLACEHOLDER = """
INSERT INTO ingest.conversations (conversation_id, tenant_id, is_placeholder, created_at)
VALUES ($1, $2, true, $3) ON CONFLICT (tenant_id, conversation_id) DO NOTHING"""
NAIVE_MESSAGE = """
INSERT INTO ingest.messages (message_id, tenant_id, conversation_id, session_id,
    parent_message_id, role, content, content_type, metadata, tokens, model,
    sender_user_id, sender_agent_id, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (tenant_id, message_id) DO NOTHING"""


def naive_main() -> None:
    """What a first FastStream version would look like: one message, one transaction."""
    import logging

    from faststream import AckPolicy as FsAckPolicy
    from faststream import ContextRepo, FastStream
    from faststream.nats import JStream, NatsBroker

    from services.runtime.db import create_pool

    # Per-message INFO logging off: we measure the consumer, not log I/O.
    broker = NatsBroker(os.environ["NATS_URL"], logger=None)
    app = FastStream(broker, logger=None)
    state: dict[str, asyncpg.Pool] = {}

    @app.on_startup
    async def connect(context: ContextRepo) -> None:
        # The ingest worker's own login (engram_ingest): under row-level security it
        # must name its message's tenant in each transaction, as every consumer must.
        state["pool"] = await create_pool(
            os.environ["DATABASE_URL"], min_size=1, max_size=2, worker=True
        )

    @app.after_shutdown
    async def close() -> None:
        await state["pool"].close()

    @broker.subscriber(
        SUBJECT,
        stream=JStream("CHAT", declare=False),
        durable="naive",
        config=ConsumerConfig(
            durable_name="naive",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            max_deliver=10,
            max_ack_pending=1000,
        ),
        ack_policy=FsAckPolicy.NACK_ON_ERROR,
    )
    async def handle(event: MessageCreated) -> None:
        p = event.payload
        async with state["pool"].acquire() as conn, conn.transaction():
            await conn.execute(NAIVE_TENANT, event.tenant_id)
            await conn.execute(
                NAIVE_PLACEHOLDER, p.conversation_id, event.tenant_id, event.occurred_at
            )
            await conn.execute(
                NAIVE_MESSAGE,
                p.message_id,
                event.tenant_id,
                p.conversation_id,
                p.session_id,
                p.parent_message_id,
                p.role.value,
                p.content,
                p.content_type.value,
                p.metadata.model_dump(exclude_none=True),
                p.metadata.tokens,
                p.metadata.model,
                p.sender_user_id,
                p.sender_agent_id,
                event.occurred_at,
            )

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(app.run(log_level=logging.WARNING))


# --------------------------------------------------------------------------------------
# Servers, databases, streams, processes
# --------------------------------------------------------------------------------------


@dataclass
class Servers(Postgres):
    nats_url: str  # the NATS admin's: the bench's own client sets the streams up
    admin_url: str
    pids: dict[str, int] = field(default_factory=dict)  # postgres (postmaster), nats
    worker_nats_url: str = ""  # the ingest worker's own NATS user (else nats_url)
    rls: bool = True  # False: row-level security disabled in the template (a diagnostic)

    def worker_env(self, cfg: Config, url: str) -> dict[str, str]:
        """The ingest worker's environment: its own NATS user and database login."""
        nats_url = self.worker_nats_url or self.nats_url
        return worker_env(cfg, nats_url, worker_login(url, "ingest"))

    async def make_template(self) -> None:
        url = await self.migrated_template(TEMPLATE_DB, ["ingest"])
        if not self.rls:
            await without_rls(url)

    async def fresh_db(self, name: str) -> str:
        return await self.clone(name, TEMPLATE_DB)

    async def drop_db(self, name: str) -> None:
        await self.drop(name)


async def without_rls(url: str) -> None:
    """Row-level security off on every ingest table (the grants stay): what the policies
    alone cost, apart from the rest of issue 13. Never how engram runs."""
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch(
            "SELECT c.oid::regclass::text AS name FROM pg_class c "
            "WHERE c.relnamespace = 'ingest'::regnamespace AND c.relrowsecurity"
        )
        for t in tables:
            await conn.execute(
                f"ALTER TABLE {t['name']} NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY"
            )
    finally:
        await conn.close()


def naive_cmd() -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "_naive"]


def worker_env(cfg: Config, nats_url: str, database_url: str) -> dict[str, str]:
    env = {"NATS_URL": nats_url, "DATABASE_URL": database_url}
    env.update({k: v for k, v in os.environ.items() if k.startswith("INGEST_")})
    env.update(cfg.ingest_env)
    return env


# --------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------


@dataclass
class Config:
    events: int
    runs: int
    data_dir: Path | None
    rate: int
    latency_s: float
    naive_max_s: float
    concurrent: bool
    latency: bool
    out: Path
    quick: bool
    live_code: bool = False
    ingest_env: dict[str, str] = field(default_factory=dict)
    seed: int = 7
    rls: bool = True  # False: a diagnostic, see --without-rls


class Ui:
    """Rich progress bars on a terminal; plain status lines otherwise (e.g. into a file)."""

    def __init__(self) -> None:
        self.live = console.is_terminal
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<34}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not self.live,
            transient=True,
        )

    def __enter__(self) -> Ui:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def task(self, description: str, total: int) -> TaskID:
        if not self.live:
            console.log(f"{description} ...")
        return self.progress.add_task(description, total=total, rate="")

    def update(self, task: TaskID, done: int, rate: str = "") -> None:
        self.progress.update(task, completed=done, rate=rate)

    def finish(self, task: TaskID, message: str) -> None:
        self.progress.remove_task(task)
        console.log(message)


async def publish_backlog(
    js: JetStreamContext, wire: Sequence[Wire], ui: Ui, label: str = "publishing backlog"
) -> float:
    """Publish every event (Nats-Msg-Id set) with a window of async publishes; events/s."""
    task = ui.task(label, len(wire))
    started = time.perf_counter()
    futures = []
    for i, w in enumerate(wire):
        futures.append(await js.publish_async(w.subject, w.data, headers=w.headers))
        if i % 2000 == 0:
            ui.update(task, i)
    await js.publish_async_completed()
    elapsed = time.perf_counter() - started
    acks = [f.result() for f in futures]
    duplicates = sum(1 for a in acks if a.duplicate)
    if duplicates or acks[-1].seq != len(wire):
        raise RuntimeError(
            f"backlog not as expected: last seq {acks[-1].seq}, {duplicates} duplicates"
        )
    rate = len(wire) / elapsed
    ui.finish(task, f"{label}: {len(wire):,} events in {elapsed:.2f}s ({rate:,.0f}/s)")
    return rate


class CpuMeter(_figures.CpuMeter):
    """CPU seconds of the worker, PostgreSQL, nats-server and this process over a window,
    and how busy the whole machine was (other sessions' work shows up as "others").
    Processes born during the window (the worker's second PostgreSQL backend, opened when
    two batches first commit at once) count whole; those that ended during it are missed."""

    def __init__(self, pids: dict[str, int], worker: subprocess.Popen[bytes] | None) -> None:
        super().__init__(pids, {} if worker is None else {"worker": worker})
        self.worker = worker


@dataclass
class Consumed:
    events_per_s: float
    seconds: float
    rows: int
    partial: bool = False
    startup_s: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)


async def measure_consumption(  # noqa: PLR0912 - one polling loop, several exits
    js: JetStreamContext,
    db: asyncpg.Connection,
    *,
    durable: str,
    n: int,
    last_message_id: uuid.UUID,
    proc: subprocess.Popen[bytes],
    ui: Ui,
    label: str,
    started: float | None = None,
    max_s: float | None = None,
    meter: CpuMeter | None = None,
) -> Consumed:
    """From the first delivery (or ``started``) to the moment every row is committed.

    Start: the consumer's first delivery, seen in its info (polled every 5 ms), so the
    worker's process start, imports and connections are not counted. End: the row of the
    last event of the stream is visible (one PK lookup, polled every 5 ms; a single worker
    commits batches in stream order), then ``count(*)`` confirms all ``n`` rows.
    """
    task = ui.task(label, n)
    spawned = time.perf_counter()
    t0 = started
    if t0 is None:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{label}: process exited with {proc.returncode}")
            info = await consumer_info(js, durable)
            if info is not None and info.delivered and info.delivered.consumer_seq > 0:
                t0 = time.perf_counter()
                break
            if time.perf_counter() - spawned > 90:
                raise TimeoutError(f"{label}: nothing delivered in 90s")
            await asyncio.sleep(0.005)
    startup = t0 - spawned if started is None else 0.0
    if meter is not None:
        meter.start()
    last_progress = 0.0
    end: float | None = None
    partial = False
    rows = 0
    while end is None:
        probe = time.perf_counter()
        if await db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM ingest.messages WHERE message_id = $1)", last_message_id
        ):
            rows = await db.fetchval("SELECT count(*) FROM ingest.messages")
            if rows >= n:
                end = probe
                break
        if proc.poll() is not None:
            raise RuntimeError(f"{label}: process exited with {proc.returncode}")
        now = time.perf_counter()
        if max_s is not None and now - t0 > max_s:
            rows = await db.fetchval("SELECT count(*) FROM ingest.messages")
            end, partial = now, True
            break
        if now - last_progress > 0.25:
            last_progress = now
            info = await consumer_info(js, durable)
            done = info.ack_floor.consumer_seq if info and info.ack_floor else 0
            ui.update(task, done, f"{done / max(now - t0, 1e-9):,.0f}/s")
        if now - t0 > 900:
            raise TimeoutError(f"{label}: not done after 900s")
        await asyncio.sleep(0.005)
    seconds = end - t0
    cpu = meter.stop(rows) if meter is not None else {}
    result = Consumed(rows / seconds, seconds, rows, partial, startup, cpu)
    note = f" (stopped after {max_s:.0f}s: {rows:,}/{n:,} rows)" if partial else ""
    ui.finish(
        task,
        f"{label}: {rows:,} rows in {seconds:.2f}s = {result.events_per_s:,.0f} "
        f"events/s{note}{cpu_note(cpu)}",
    )
    return result


def cpu_note(cpu: dict[str, float]) -> str:
    if not cpu:
        return ""
    parts = [
        f"{k} {cpu[f'{k}_cores']:.2f}"
        for k in ("worker", "postgres", "nats")
        if f"{k}_cores" in cpu
    ]
    if "others_cores" in cpu:
        parts.append(f"other sessions {cpu['others_cores']:.2f}")
    return "; CPU cores: " + ", ".join(parts)


async def measure_pull_ack(js: JetStreamContext, nc: Any, n: int, ui: Ui) -> float:
    """nats-py pull (fetch 500) + ack of every message; no decoding, no database."""
    await js.add_consumer(
        "CHAT",
        ConsumerConfig(
            durable_name="raw",
            name="raw",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            max_ack_pending=5000,
            filter_subjects=[SUBJECT],
        ),
    )
    sub = await js.pull_subscribe_bind(durable="raw", stream="CHAT")
    task = ui.task("(c) raw pull+ack", n)
    got = 0
    started = time.perf_counter()
    while got < n:
        msgs = await sub.fetch(500, timeout=5)
        for m in msgs:
            await m.ack()
        got += len(msgs)
        ui.update(task, got)
    await nc.flush()
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    info = await consumer_info(js, "raw")
    if info.ack_floor.consumer_seq < n:  # acks are in; make sure the server has them all
        await asyncio.sleep(0.2)
    rate = got / elapsed
    ui.finish(task, f"(c) raw pull+ack: {got:,} in {elapsed:.2f}s = {rate:,.0f} msgs/s")
    return rate


async def measure_copy(url: str, records: Sequence[tuple[Any, ...]], ui: Ui) -> float:
    """asyncpg COPY of the same rows into a table shaped like ingest.messages (its
    columns, defaults, checks and indexes; no foreign keys)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE ingest.bench_copy (LIKE ingest.messages INCLUDING ALL)")
        task = ui.task("(c) COPY rows", len(records))
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "bench_copy", schema_name="ingest", columns=list(COPY_COLUMNS), records=records
        )
        elapsed = time.perf_counter() - started
        count = await conn.fetchval("SELECT count(*) FROM ingest.bench_copy")
        assert count == len(records), count
    finally:
        await conn.close()
    rate = len(records) / elapsed
    ui.finish(task, f"(c) COPY: {len(records):,} rows in {elapsed:.2f}s = {rate:,.0f} rows/s")
    return rate


@dataclass
class Latency:
    rate: int
    published: int
    seen: int
    achieved_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    # The same events timed by the worker's acks (sent right after COMMIT), observed on
    # $JS.ACK.> without polling: no load on the database, no poll-period rounding.
    ack_seen: int = 0
    ack_p50_ms: float = math.nan
    ack_p95_ms: float = math.nan
    ack_p99_ms: float = math.nan
    ack_max_ms: float = math.nan
    cpu: dict[str, float] = field(default_factory=dict)


def _fresh(event: MessageCreated) -> bytes:
    # Stamped when sent, as a producer would.
    return event.model_copy(update={"occurred_at": datetime.now(UTC)}).model_dump_json().encode()


async def measure_latency(
    nc: Any,
    js: JetStreamContext,
    db: asyncpg.Connection,
    events: Sequence[MessageCreated],
    *,
    rate: int,
    warmup: int,
    ui: Ui,
    meter: CpuMeter | None = None,
) -> Latency:
    """Publish at a steady rate; a poller (every ~2 ms) records when each row is visible
    (``_latency.steady_publish``). Latency of an event = start of the first poll that sees
    its row - its publish call. The worker's acks, observed on $JS.ACK.>, give a second
    timing."""

    def outgoing(batch: Sequence[MessageCreated], timed: bool) -> list[Outgoing]:
        return [
            Outgoing(e.type, functools.partial(_fresh, e), e.headers(), e.payload.message_id, timed)
            for e in batch
        ]

    query = "SELECT message_id FROM ingest.messages WHERE message_id = ANY($1::uuid[])"
    task = ui.task("(d) latency warm-up", warmup)
    await steady_publish(
        nc,
        js,
        db,
        outgoing(events[:warmup], False),
        rate=rate,
        poll_sql=query,
        settle_s=30,
        progress=lambda i: ui.update(task, i),
    )
    ui.finish(task, f"(d) warm-up: {warmup} events")
    measured = events[warmup:]
    task = ui.task(f"(d) latency at {rate:,}/s", len(measured))
    cpu: dict[str, float] = {}

    def stop_meter() -> None:
        if meter is not None:
            cpu.update(meter.stop(len(measured)))

    if meter is not None:
        meter.start()
    timings = await steady_publish(
        nc,
        js,
        db,
        outgoing(measured, True),
        rate=rate,
        poll_sql=query,
        settle_s=60,
        progress=lambda i: ui.update(task, i),
        settled=stop_meter,
    )
    achieved, seen = timings.achieved_rate, len(timings.by_poll)
    ms = [1000 * x for x in timings.by_poll.values()]
    by_ack = [1000 * x for x in timings.by_ack.values()]
    result = Latency(
        rate,
        len(measured),
        seen,
        round(achieved, 1),
        percentile(ms, 0.5),
        percentile(ms, 0.95),
        percentile(ms, 0.99),
        max(ms) if ms else math.nan,
        len(by_ack),
        percentile(by_ack, 0.5),
        percentile(by_ack, 0.95),
        percentile(by_ack, 0.99),
        max(by_ack) if by_ack else math.nan,
        cpu,
    )
    ui.finish(
        task,
        f"(d) latency at {achieved:,.0f}/s: p50 {result.p50_ms:.1f} ms, p95 "
        f"{result.p95_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, max "
        f"{result.max_ms:.1f} ms ({seen:,}/{len(measured):,} seen); by ack: p50 "
        f"{result.ack_p50_ms:.1f}, p99 {result.ack_p99_ms:.1f} ms{cpu_note(cpu)}",
    )
    return result


# --------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------


@dataclass
class Shared:
    cfg: Config
    servers: Servers
    logs: Path
    events: list[MessageCreated]
    wire: list[Wire]
    records: list[tuple[Any, ...]]
    latency_events: list[MessageCreated]


async def run_once(shared: Shared, run: int, ui: Ui) -> dict[str, Any]:  # noqa: PLR0915
    cfg, servers = shared.cfg, shared.servers
    n = len(shared.wire)
    last_id = shared.events[-1].payload.message_id
    result: dict[str, Any] = {"run": run, "loadavg_at_start": loadavg()}
    nc = await nats.connect(servers.nats_url, max_reconnect_attempts=-1)
    js = nc.jetstream(publish_async_max_pending=4000)
    names = [f"bench_r{run}_{x}" for x in ("engram", "naive", "copy", "concurrent", "latency")]
    try:
        # The backlog, once per run, read by every consumer below (each its own durable).
        await fresh_streams(js)
        result["publish_eps"] = await publish_backlog(js, shared.wire, ui)

        # (c) raw pull + ack
        await servers.checkpoint()
        result["pull_ack_eps"] = await measure_pull_ack(js, nc, n, ui)

        # (a) engram worker on the backlog
        url = await servers.fresh_db(names[0])
        await servers.checkpoint()
        db = await asyncpg.connect(url)
        proc = start_process(
            engram_cmd(),
            servers.worker_env(cfg, url),
            shared.logs / f"run{run}-engram.log",
        )
        try:
            a = await measure_consumption(
                js,
                db,
                durable="ingest",
                n=n,
                last_message_id=last_id,
                proc=proc,
                ui=ui,
                label="(a) engram ingest (backlog)",
                meter=CpuMeter(servers.pids, proc),
            )
            inbox = await db.fetchval("SELECT count(*) FROM ingest.inbox")
            if inbox != n:
                raise RuntimeError(f"engram recorded {inbox} inbox rows for {n} events")
            result["engram_versions"] = await db.fetchval(
                "SELECT count(*) FROM ingest.message_versions"
            )
        finally:
            stop_process(proc, 25.0)
            await db.close()
        result.update(
            engram_eps=a.events_per_s,
            engram_s=a.seconds,
            engram_startup_s=a.startup_s,
            engram_cpu=a.cpu,
        )
        await servers.drop_db(names[0])

        # (b) naive FastStream consumer on the same backlog
        url = await servers.fresh_db(names[1])
        await servers.checkpoint()
        db = await asyncpg.connect(url)
        proc = start_process(
            naive_cmd(),
            # The naive consumer's durable is not the ingest user's, so it reads as the
            # NATS admin; in PostgreSQL it is a worker like any other: engram_ingest.
            {"NATS_URL": servers.nats_url, "DATABASE_URL": worker_login(url, "ingest")},
            shared.logs / f"run{run}-naive.log",
        )
        try:
            b = await measure_consumption(
                js,
                db,
                durable="naive",
                n=n,
                last_message_id=last_id,
                proc=proc,
                ui=ui,
                label="(b) naive FastStream",
                max_s=cfg.naive_max_s,
                meter=CpuMeter(servers.pids, proc),
            )
        finally:
            stop_process(proc, 25.0)
            await db.close()
        result.update(
            naive_eps=b.events_per_s,
            naive_s=b.seconds,
            naive_rows=b.rows,
            naive_partial=b.partial,
            naive_cpu=b.cpu,
        )
        await servers.drop_db(names[1])

        # (c) COPY of the same rows
        url = await servers.fresh_db(names[2])
        await servers.checkpoint()
        result["copy_rps"] = await measure_copy(url, shared.records, ui)
        await servers.drop_db(names[2])

        # (a') engram with the publisher running at the same time
        if cfg.concurrent:
            await fresh_streams(js)
            url = await servers.fresh_db(names[3])
            await servers.checkpoint()
            db = await asyncpg.connect(url)
            proc = start_process(
                engram_cmd(),
                servers.worker_env(cfg, url),
                shared.logs / f"run{run}-concurrent.log",
            )
            try:
                await wait_consumer(js, "ingest", proc)
                await asyncio.sleep(0.5)  # the worker's first pull request is waiting
                started = time.perf_counter()
                publish_task = asyncio.create_task(
                    publish_backlog(js, shared.wire, ui, "(a') publishing while consuming")
                )
                c = await measure_consumption(
                    js,
                    db,
                    durable="ingest",
                    n=n,
                    last_message_id=last_id,
                    proc=proc,
                    ui=ui,
                    label="(a') engram ingest (live publish)",
                    started=started,
                    meter=CpuMeter(servers.pids, proc),
                )
                result["concurrent_publish_eps"] = await publish_task
            finally:
                stop_process(proc, 25.0)
                await db.close()
            result.update(
                concurrent_eps=c.events_per_s, concurrent_s=c.seconds, concurrent_cpu=c.cpu
            )
            await servers.drop_db(names[3])

        # (d) latency at a steady rate
        if cfg.latency:
            await fresh_streams(js)
            url = await servers.fresh_db(names[4])
            await servers.checkpoint()
            db = await asyncpg.connect(url)
            proc = start_process(
                engram_cmd(),
                servers.worker_env(cfg, url),
                shared.logs / f"run{run}-latency.log",
            )
            try:
                await wait_consumer(js, "ingest", proc)
                await asyncio.sleep(0.5)
                lat = await measure_latency(
                    nc,
                    js,
                    db,
                    shared.latency_events,
                    rate=cfg.rate,
                    warmup=min(300, cfg.rate // 2),
                    ui=ui,
                    meter=CpuMeter(servers.pids, proc),
                )
            finally:
                stop_process(proc, 25.0)
                await db.close()
            result["latency"] = lat.__dict__
            await servers.drop_db(names[4])
    finally:
        await nc.close()
        for name in names:
            with contextlib.suppress(Exception):
                await servers.drop_db(name)
    result["ratio_vs_naive"] = result["engram_eps"] / result["naive_eps"]
    result["ratio_vs_pull_ack"] = result["engram_eps"] / result["pull_ack_eps"]
    result["ratio_vs_copy"] = result["engram_eps"] / result["copy_rps"]
    return result


# --------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------

ROWS: list[tuple[str, str, Callable[[float], str]]] = [
    ("engram_eps", "(a) engram ingest, backlog (events/s)", lambda v: f"{v:,.0f}"),
    ("concurrent_eps", "(a') engram ingest, live publish (events/s)", lambda v: f"{v:,.0f}"),
    ("naive_eps", "(b) naive FastStream consumer (events/s)", lambda v: f"{v:,.0f}"),
    ("pull_ack_eps", "(c) raw JetStream pull+ack (msgs/s)", lambda v: f"{v:,.0f}"),
    ("copy_rps", "(c) COPY into messages-shaped table (rows/s)", lambda v: f"{v:,.0f}"),
    ("publish_eps", "publisher, async with Nats-Msg-Id (events/s)", lambda v: f"{v:,.0f}"),
    ("ratio_vs_naive", "a / b", lambda v: f"{v:.1f}x"),
    ("ratio_vs_pull_ack", "a / pull+ack", lambda v: f"{v:.2f}"),
    ("ratio_vs_copy", "a / COPY", lambda v: f"{v:.2f}"),
    ("latency_p50_ms", "(d) latency p50 at 1k/s (ms)", lambda v: f"{v:.1f}"),
    ("latency_p95_ms", "(d) latency p95 at 1k/s (ms)", lambda v: f"{v:.1f}"),
    ("latency_p99_ms", "(d) latency p99 at 1k/s (ms)", lambda v: f"{v:.1f}"),
    ("latency_max_ms", "(d) latency max at 1k/s (ms)", lambda v: f"{v:.1f}"),
    ("latency_ack_p50_ms", "(d) latency p50 by ack, no poller (ms)", lambda v: f"{v:.1f}"),
    ("latency_ack_p99_ms", "(d) latency p99 by ack, no poller (ms)", lambda v: f"{v:.1f}"),
    ("engram_worker_us_per_event", "(a) CPU us/event: engram worker", lambda v: f"{v:.0f}"),
    ("engram_postgres_us_per_event", "(a) CPU us/event: PostgreSQL", lambda v: f"{v:.0f}"),
    ("engram_nats_us_per_event", "(a) CPU us/event: nats-server", lambda v: f"{v:.0f}"),
    ("naive_worker_us_per_event", "(b) CPU us/event: naive consumer", lambda v: f"{v:.0f}"),
    ("naive_postgres_us_per_event", "(b) CPU us/event: PostgreSQL", lambda v: f"{v:.0f}"),
    ("engram_others_cores", "(a) other sessions' load (cores busy)", lambda v: f"{v:.2f}"),
    ("latency_others_cores", "(d) other sessions' load (cores busy)", lambda v: f"{v:.2f}"),
]

GOALS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "engram_eps": (f">= {GOAL_EPS:,.0f}", lambda v: v >= GOAL_EPS),
    "ratio_vs_naive": (f">= {GOAL_VS_NAIVE:.0f}x", lambda v: v >= GOAL_VS_NAIVE),
    "ratio_vs_pull_ack": (f">= {GOAL_VS_PULL}", lambda v: v >= GOAL_VS_PULL),
    "latency_p99_ms": (f"<= {GOAL_P99_MS:.0f} ms", lambda v: v <= GOAL_P99_MS),
}


def flatten(run: dict[str, Any]) -> dict[str, float]:
    flat = {
        k: float(v)
        for k, v in run.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    lat = run.get("latency")
    if lat:
        flat.update(
            latency_p50_ms=lat["p50_ms"],
            latency_p95_ms=lat["p95_ms"],
            latency_p99_ms=lat["p99_ms"],
            latency_max_ms=lat["max_ms"],
            latency_ack_p50_ms=lat["ack_p50_ms"],
            latency_ack_p99_ms=lat["ack_p99_ms"],
        )
    for prefix in ("engram", "naive", "concurrent"):
        cpu = run.get(f"{prefix}_cpu") or {}
        for key in (
            "worker_us_per_event",
            "postgres_us_per_event",
            "nats_us_per_event",
            "others_cores",
        ):
            if key in cpu:
                flat[f"{prefix}_{key}"] = cpu[key]
    if lat and lat.get("cpu", {}).get("others_cores") is not None:
        flat["latency_others_cores"] = lat["cpu"]["others_cores"]
    return flat


def run_table(run: dict[str, Any], n: int) -> Table:
    flat = flatten(run)
    table = Table(title=f"run {run['run']} - {n:,} chat.message.created events")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, label, fmt in ROWS:
        if key in flat:
            extra = ""
            if key == "naive_eps" and run.get("naive_partial"):
                extra = f" ({run['naive_rows']:,} rows in {run['naive_s']:.0f}s)"
            table.add_row(label, fmt(flat[key]) + extra)
    return table


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    flats = [flatten(r) for r in runs]
    summary: dict[str, dict[str, float]] = {}
    for key, _, _ in ROWS:
        values = [f[key] for f in flats if key in f and not math.isnan(f[key])]
        if values:
            summary[key] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
            }
    return summary


def summary_table(summary: dict[str, dict[str, float]], runs: int) -> Table:
    table = Table(title=f"summary - median of {runs} run(s)")
    for name, justify in (
        ("measure", "left"),
        ("median", "right"),
        ("min", "right"),
        ("max", "right"),
        ("goal", "right"),
        ("", "center"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for key, label, fmt in ROWS:
        if key not in summary:
            continue
        s = summary[key]
        goal, verdict = "", ""
        if key in GOALS:
            goal = GOALS[key][0]
            verdict = "[green]PASS[/]" if GOALS[key][1](s["median"]) else "[red]FAIL[/]"
        table.add_row(label, fmt(s["median"]), fmt(s["min"]), fmt(s["max"]), goal, verdict)
    return table


def goal_results(summary: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    out = []
    for key, (goal, check) in GOALS.items():
        if key in summary:
            value = summary[key]["median"]
            out.append({"measure": key, "median": value, "goal": goal, "pass": check(value)})
    return out


def code_version() -> dict[str, Any]:
    snapshot = os.environ.get(SNAPSHOT_ENV)
    return _code.code_version(Path(snapshot) if snapshot else ROOT)


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        info["loadavg_at_start"] = os.getloadavg()
    return info


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


async def bench(
    cfg: Config,
    nats_url: str,
    database_url: str,
    logs: Path,
    pids: dict[str, int],
    *,
    worker_nats_url: str = "",
) -> dict[str, Any]:
    admin = admin_url(database_url)
    servers = Servers(nats_url, admin, pids, worker_nats_url, rls=cfg.rls)
    await servers.make_template()

    started = time.perf_counter()
    events = build_events(cfg.events, seed=cfg.seed)
    wire = serialize(events)
    records = copy_records(events)
    latency_n = int(cfg.rate * cfg.latency_s) + min(300, cfg.rate // 2)
    latency_events = build_events(latency_n, seed=cfg.seed + 1000)
    sizes = [len(e.payload.content) for e in events]
    conversations = len({e.payload.conversation_id for e in events})
    console.log(
        f"built {len(events):,} events in {time.perf_counter() - started:.1f}s: content "
        f"{min(sizes)}-{max(sizes)} chars (median {statistics.median(sizes):.0f}, mean "
        f"{statistics.fmean(sizes):.0f}), {conversations} conversations, "
        f"{sum(len(w.data) for w in wire) / 1e6:.1f} MB on the wire"
    )
    shared = Shared(cfg, servers, logs, events, wire, records, latency_events)

    runs: list[dict[str, Any]] = []
    for run in range(1, cfg.runs + 1):
        console.rule(f"run {run}/{cfg.runs}")
        with Ui() as ui:
            result = await run_once(shared, run, ui)
        runs.append(result)
        console.print(run_table(result, cfg.events))

    summary = summarize(runs)
    console.rule("summary")
    console.print(summary_table(summary, len(runs)))
    naive_partial = [r for r in runs if r.get("naive_partial")]
    if naive_partial:
        console.print(
            f"note: the naive consumer was stopped after {cfg.naive_max_s:.0f}s in "
            f"{len(naive_partial)} run(s); its rate is rows committed / time."
        )
    return {
        "benchmark": "ingest",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "events": cfg.events,
            "runs": cfg.runs,
            "quick": cfg.quick,
            "latency_rate": cfg.rate,
            "latency_seconds": cfg.latency_s,
            "naive_max_s": cfg.naive_max_s,
            "row_level_security": cfg.rls,
            "ingest_env": worker_env(cfg, "", "") | {"NATS_URL": "", "DATABASE_URL": ""},
            "content_chars": {
                "min": min(sizes),
                "max": max(sizes),
                "median": statistics.median(sizes),
                "mean": statistics.fmean(sizes),
            },
        },
        "machine": machine(),
        "code": code_version(),
        "runs": runs,
        "summary": summary,
        "goals": goal_results(summary),
    }


def parse_args(argv: list[str]) -> Config:
    parser = _script.parser(__doc__)
    parser.add_argument("--events", type=int, default=None, help="events per run (100000)")
    parser.add_argument("--runs", type=int, default=None, help="runs; medians are reported (3)")
    parser.add_argument(
        "--quick", action="store_true", help="sanity check: 10k events, 1 run, 5 s of latency"
    )
    parser.add_argument("--rate", type=int, default=1000, help="events/s of the latency test")
    parser.add_argument(
        "--latency-seconds", type=float, default=None, help="length of the latency test (10)"
    )
    parser.add_argument(
        "--naive-max-seconds",
        type=float,
        default=60.0,
        help="stop the naive consumer after this long and report rows/time",
    )
    parser.add_argument(
        "--no-concurrent", action="store_true", help="skip (a') publish-while-consuming"
    )
    parser.add_argument("--no-latency", action="store_true", help="skip (d)")
    parser.add_argument(
        "--ingest-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra INGEST_* setting for the worker (repeatable)",
    )
    parser.add_argument(
        "--without-rls",
        action="store_true",
        help="diagnostic: row-level security disabled on the ingest tables (workers still "
        "log in as engram_ingest), to tell its cost from the rest",
    )
    _script.add_run_options(
        parser,
        out=None,
        out_help="JSON results (bench/results/ingest.json; -quick.json with --quick)",
    )
    a = parser.parse_args(argv)
    quick = a.quick
    default_out = _script.RESULTS / ("ingest-quick.json" if quick else "ingest.json")
    return Config(
        events=a.events or (10_000 if quick else 100_000),
        runs=a.runs or (1 if quick else 3),
        data_dir=a.data_dir,
        rate=a.rate,
        latency_s=a.latency_seconds or (5.0 if quick else 10.0),
        naive_max_s=a.naive_max_seconds,
        concurrent=not a.no_concurrent,
        latency=not a.no_latency,
        out=a.out or default_out,
        quick=quick,
        live_code=a.live_code,
        ingest_env=_script.settings(a.ingest_env),
        rls=not a.without_rls,
    )


def main(argv: list[str]) -> int:
    if argv[:1] == ["_naive"]:
        naive_main()
        return 0
    cfg = parse_args(argv)
    measured = _script.measured_code(__file__, argv, cfg.live_code, console)
    code = measured.code
    dirty = ", with uncommitted changes" if code.get("uncommitted_changes") else ""
    console.log(
        f"measuring {'a snapshot of ' if measured.snapshot else ''}{measured.where} (commit "
        f"{code.get('commit', '')[:10]}{dirty}, tree {code['tree_sha']})"
    )

    async def measure(servers: _servers.Servers) -> dict[str, Any]:
        report = await bench(
            cfg,
            servers.urls["NATS_URL"],
            servers.urls["DATABASE_URL"],
            servers.logs,
            servers.pids,
            worker_nats_url=servers.nats_users.get("ingest", ""),
        )
        report["code"] = code
        # Written before the servers stop, so a Ctrl-C while they stop does not lose it.
        _script.write(cfg.out, report, console)
        return report

    _script.on_servers(cfg.data_dir, "engram-bench-", console, measure)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
