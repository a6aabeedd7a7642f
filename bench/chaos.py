#!/usr/bin/env python
"""Chaos benchmark: kill -9 of each of the five workers under 100k events loses and doubles
nothing (issue 13's failure matrix).

    .venv/bin/python bench/chaos.py [--events 100000] [--rate 300] [--kills-per-worker 10]

Starts the embedded nats-server and PostgreSQL (DevStack, with every service's NATS user),
migrates, sets the bus up as the admin, and runs the five workers (`engram run ingest |
embedder | memory | checkpointer | audit`), each as its own PostgreSQL role and NATS user.
A producer (the ``producer`` NATS user) publishes --events at --rate/s with ``Nats-Msg-Id``,
retrying a timed-out publish with the same id: chat (conversations, sessions, user and
assistant turns, edits, deletes), ``memory.write`` of the four memory types (some
rewriting an earlier memory), and ``state.patch`` (RFC 6902 with ``test`` operations and
``expected_version``, and merge patches) / ``state.checkpoint`` of a few hundred agent
states. Chat texts are drawn from a pool of --text-pool short sentences per tenant, so the
embedder (the slow worker) embeds at most that many chat texts per tenant (equal texts are
embedded once), plus one text per memory and per session summary.

Meanwhile each worker is killed (SIGKILL to its process group) --kills-per-worker times at
random moments of the load and restarted at once, as a supervisor would. Per kill: the time
until the new process acks again (its first ack seen on ``$JS.ACK.>``), and until it has
caught up with everything published before the kill (the ack floor of each of its consumers
past the stream's last sequence at the kill).

When every consumer is caught up and the queues are empty, it checks against what was
published: ingest (rows, versions, deletes, session counters, conversations), embedder (one
chunk per live message and memory, with its current text, one vector each, none for deleted
messages, queue empty), memory (each memory once with its type, text, content, importance
and a vector of its current text; one summary per ended session), checkpointer (version =
patches applied, state = the patches applied in publish order, checkpoints at the right
version, no conflict, nothing parked), audit (one row per stored message of every stream,
chains verify) and the DLQ (empty). Prints a table, writes bench/results/chaos.json; exit
code 1 on any loss or duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH, so a snapshot there wins

import asyncpg  # noqa: E402
from nats.aio.client import Client as NatsClient  # noqa: E402
from nats.aio.msg import Msg  # noqa: E402
from rich.table import Table  # noqa: E402

from bench import _script, _servers  # noqa: E402
from bench._figures import percentile  # noqa: E402
from bench._servers import worker_login  # noqa: E402
from bench._traffic import (  # noqa: E402
    Acks,
    Expected,
    Producer,
    check_ingest,
    consumers,
    dead_letters,
    publish_once,
    start_worker,
)
from contracts import memory, state  # noqa: E402
from contracts.envelope import Envelope  # noqa: E402

WORKERS = ("ingest", "embedder", "memory", "checkpointer", "audit")
PROGRESS_S = 30.0
# A killed embedder's leased chunks are embedded again once the lease runs out (default
# 300 s); shorter here so the final drain does not wait five minutes after the last kill.
DEFAULT_WORKER_ENV = {"EMBEDDER_LEASE_S": "60"}
MIN_WORK_S = 20.0  # a restarted worker works this long, at least, before its next kill

console = _script.console(width=120)

VOCAB = (  # noqa: SIM905 - a sentence is easier to read and extend than a list
    "hotel river breakfast booking flight aisle seat Lisbon Porto refund invoice deploy "
    "cluster ticket escalate password reset budget dinner vegetarian museum tram taxi "
    "airport delay upgrade receipt order parcel broken courier weekend quiet room view "
    "balcony parking meeting agenda report quarterly summary draft contract signature"
).split()


def sentence_pool(n: int, seed: int) -> list[str]:
    """``n`` distinct short sentences (6-16 words: one chunk each)."""
    rng, out = random.Random(seed), dict[str, None]()
    while len(out) < n:
        words = [rng.choice(VOCAB) for _ in range(rng.randint(6, 16))]
        out[" ".join(words).capitalize() + rng.choice(".?!")] = None
    return list(out)


# --- the load: memories and agent states beside the chat ----------------------------------


@dataclass
class MemoryExpect:
    tenant: str
    memory_type: str
    text: str
    content: Any  # what the content must hold (see essence)
    importance: float


def essence(memory_type: str, content: dict[str, Any]) -> Any:
    """The fields of a memory's content that must come back as written."""
    keys = {
        "episodic": ("event",),
        "semantic": ("concept", "definition"),
        "procedural": ("skill", "steps"),
        "working": ("items", "capacity"),
    }[memory_type]
    return [content.get(k) for k in keys]


class Memories:
    """memory.write of the four types; ``rewrite_share`` of them replace an earlier memory
    (same id and type, new text, later occurred_at: the newest wins)."""

    def __init__(self, tenants: list[str], seed: int, rewrite_share: float = 0.15) -> None:
        self.rng, self.tenants, self.rewrite_share = random.Random(seed), tenants, rewrite_share
        self.expected: dict[uuid.UUID, MemoryExpect] = {}
        self.n = 0

    def next_event(self) -> memory.MemoryWrite:
        rng = self.rng
        self.n += 1
        if self.expected and rng.random() < self.rewrite_share:
            mid = rng.choice(list(self.expected)[-500:])
            tenant, kind = self.expected[mid].tenant, self.expected[mid].memory_type
        else:
            mid, tenant = uuid.uuid4(), rng.choice(self.tenants)
            kind = rng.choice(("episodic", "semantic", "procedural", "working"))
        topic = " ".join(rng.choice(VOCAB) for _ in range(3))
        text = f"Memory {self.n}: the user cares about {topic} ({rng.randint(1, 10**6)})."
        contents: dict[str, dict[str, Any]] = {
            "episodic": {"event": text, "temporal": {"occurred_at": datetime.now(UTC)}},
            "semantic": {"concept": topic, "definition": text},
            "procedural": {"skill": topic, "steps": [text, f"check {topic}"]},
            "working": {"items": [text, topic], "capacity": 7},
        }
        content = contents[kind]
        payload = {
            "memory_id": mid,
            "memory_type": kind,
            "agent_id": rng.choice(("travel-bot", "coder")),
            "user_id": f"mu-{rng.randint(1, 200)}",
            "text": text,
            "importance": round(rng.uniform(0.1, 0.9), 2),
            "content": content,
        }
        return memory.MemoryWrite(
            event_id=uuid.uuid4(),
            tenant_id=tenant,
            producer="bench-chaos",
            occurred_at=datetime.now(UTC),
            payload=payload,
        )

    def record(self, e: memory.MemoryWrite) -> None:
        p = e.payload
        content = p.content.model_dump(mode="json")
        self.expected[p.memory_id] = MemoryExpect(
            e.tenant_id, p.memory_type, p.text, essence(p.memory_type, content), p.importance
        )


StateKey = tuple[str, str, str]  # tenant, user, agent


@dataclass
class StateExpect:
    doc: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {p: {} for p in state.PARTITIONS}
    )
    version: int = 0
    patch_events: list[uuid.UUID] = field(default_factory=list)


class States:
    """state.patch and state.checkpoint of ``count`` agent states. Each patch's effect is
    computed here by hand (set, append, remove, merge); ``test`` operations and
    ``expected_version`` make a patch applied out of publish order fail loudly (a
    dead letter or a conflict). Users are ``su-*``, never a chat user, so no chat session
    end resets these states."""

    def __init__(self, tenants: list[str], count: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.keys: list[StateKey] = [
            (self.rng.choice(tenants), f"su-{i}", self.rng.choice(("planner", "coder")))
            for i in range(count)
        ]
        self.expected: dict[StateKey, StateExpect] = {}
        self.checkpoints: dict[uuid.UUID, tuple[StateKey, int]] = {}
        self.pending: tuple[StateKey, Any] | None = None

    def next_event(self) -> state.StatePatch | state.StateCheckpoint:
        rng = self.rng
        key = rng.choice(self.keys)
        tenant, user, agent = key
        now = self.expected.get(key) or StateExpect()
        base = {"event_id": uuid.uuid4(), "tenant_id": tenant, "producer": "bench-chaos"}
        base["occurred_at"] = datetime.now(UTC)
        if now.version and rng.random() < 0.08:
            cp = state.StateCheckpointPayload(
                user_id=user, agent_id=agent, label=f"v{now.version}", checkpoint_id=uuid.uuid4()
            )
            self.pending = (key, now.version)
            return state.StateCheckpoint(**base, payload=cp)
        doc = json.loads(json.dumps(now.doc))
        expected_version = now.version if rng.random() < 0.3 else None
        if rng.random() < 0.25:
            k = f"k{rng.randint(0, 9)}"
            value = None if k in doc["persistent"] and rng.random() < 0.3 else rng.randint(0, 999)
            if value is None:
                del doc["persistent"][k]
            else:
                doc["persistent"][k] = value
            payload = state.StatePatchPayload(
                user_id=user,
                agent_id=agent,
                merge_patch={"persistent": {k: value}},
                expected_version=expected_version,
            )
        else:
            ops: list[dict[str, Any]] = []
            if "counter" in doc["local"]:  # fails if an earlier patch was not applied first
                ops.append(
                    {"op": "test", "path": "/local/counter", "value": doc["local"]["counter"]}
                )
            doc["local"]["counter"] = now.version + 1
            ops.append({"op": "add", "path": "/local/counter", "value": now.version + 1})
            if "items" not in doc["session"]:
                doc["session"]["items"] = []
                ops.append({"op": "add", "path": "/session/items", "value": []})
            item = {"n": now.version, "sku": rng.choice(VOCAB)}
            doc["session"]["items"].append(item)
            ops.append({"op": "add", "path": "/session/items/-", "value": item})
            if len(doc["session"]["items"]) > 20:
                doc["session"]["items"].pop(0)
                ops.append({"op": "remove", "path": "/session/items/0"})
            if rng.random() < 0.3:
                mode = rng.choice(("plan", "act", "review"))
                op = "replace" if "mode" in doc["shared"] else "add"
                doc["shared"]["mode"] = mode
                ops.append({"op": op, "path": "/shared/mode", "value": mode})
            payload = state.StatePatchPayload.model_validate(
                {
                    "user_id": user,
                    "agent_id": agent,
                    "patch": ops,
                    "expected_version": expected_version,
                }
            )
        self.pending = (key, doc)
        return state.StatePatch(**base, payload=payload)

    def record(self, e: state.StatePatch | state.StateCheckpoint) -> None:
        assert self.pending is not None
        key, what = self.pending
        if isinstance(e, state.StateCheckpoint):
            self.checkpoints[e.payload.checkpoint_id] = (key, what)
            return
        now = self.expected.setdefault(key, StateExpect())
        now.doc, now.version = what, now.version + 1
        now.patch_events.append(e.event_id)


class Load:
    """The mix of chat, memory and state events, published one at a time in order."""

    def __init__(self, cfg: Config, nc: NatsClient) -> None:
        tenants = [f"tenant-{i}" for i in range(cfg.tenants)]
        pools = {t: sentence_pool(cfg.text_pool, cfg.seed + i) for i, t in enumerate(tenants)}
        self.chat = Producer(
            nc,
            cfg.tenants,
            cfg.active,
            cfg.seed,
            texts=lambda rng, role, tenant: rng.choice(pools[tenant]),
            edit_share=0.04,
            delete_share=0.02,
            producer="bench-chaos",
        )
        self.memories = Memories(tenants, cfg.seed + 1)
        self.states = States(tenants, cfg.states, cfg.seed + 2)
        self.js = nc.jetstream()
        self.rng = random.Random(cfg.seed + 3)
        self.shares = (cfg.chat_share, cfg.memory_share)

    @property
    def x(self) -> Expected:
        return self.chat.expected

    async def publish_next(self) -> None:
        roll = self.rng.random()
        event: Envelope
        if roll < self.shares[0]:
            await self.chat.publish(self.chat.next_event())
            return
        if roll < self.shares[0] + self.shares[1]:
            event = self.memories.next_event()
            if await publish_once(self.js, event, self.x):
                self.memories.record(event)
            return
        event = self.states.next_event()
        if await publish_once(self.js, event, self.x):
            self.states.record(event)


# --- the workers, the kills and the times to resume ---------------------------------------


@dataclass
class Config:
    events: int
    rate: float
    kills_per_worker: int
    tenants: int
    active: int
    states: int
    text_pool: int
    chat_share: float
    memory_share: float
    worker_env: dict[str, str]
    drain_timeout_s: float
    data_dir: Path | None
    out: Path
    live_code: bool
    seed: int


@dataclass
class Kill:
    worker: str
    at_s: float  # since the load started
    during_load: bool
    last_seqs: dict[str, int]  # stream -> its last sequence at the kill
    resumed_s: float | None = None  # kill -> first ack of the restarted process
    caught_up_s: float | None = None  # kill -> every consumer past last_seqs


class Chaos:
    """The five workers, restarted at once after each kill -9 (or exit), and what each
    kill cost."""

    def __init__(self, cfg: Config, servers: _servers.Servers, db_url: str, admin: NatsClient):
        self.cfg, self.servers, self.admin = cfg, servers, admin
        self.env = {
            w: {
                **DEFAULT_WORKER_ENV,
                **cfg.worker_env,
                "NATS_URL": servers.nats_users[w],
                "DATABASE_URL": worker_login(db_url, w),
            }
            for w in WORKERS
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started_at: dict[str, float] = {}
        self.kills: list[Kill] = []
        self.exits: Counter[str] = Counter()  # exits nobody asked for
        self.acks = Acks()
        self.streams_of: dict[str, list[str]] = {}
        self.t0 = time.monotonic()
        self.loading = True
        self.tasks: list[asyncio.Task[None]] = []

    async def on_ack(self, msg: Msg) -> None:
        await self.acks.on_msg(msg)

    def start(self, worker: str) -> None:
        log = self.servers.logs / f"chaos-{worker}.log"
        with log.open("ab") as out:
            out.write(f"\n===== start at {time.monotonic() - self.t0:.1f}s =====\n".encode())
        self.procs[worker] = start_worker(worker, self.env[worker], log)
        self.started_at[worker] = time.monotonic()

    def kill9(self, worker: str) -> None:
        proc = self.procs[worker]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the worker's own session: it and its children
        proc.wait()

    def supervise(self) -> None:
        """Restart a worker that exited by itself (a supervisor would), and count it."""
        for worker, proc in self.procs.items():
            if proc.poll() is not None:
                self.exits[worker] += 1
                console.log(f"[red]{worker} exited by itself ({proc.returncode}); restarting")
                self.start(worker)

    def acking_since(self, worker: str) -> float | None:
        """When the current process of ``worker`` acked, if it has: acks seen 0.5 s or more
        after its start (a new process needs longer than that to connect, so no ack in
        flight from the killed one counts)."""
        last = self.acks.last_ack.get(worker)
        return last if last is not None and last > self.started_at[worker] + 0.5 else None

    async def wait_for_consumers(self) -> None:
        deadline = time.monotonic() + 300
        from services.runtime.bus import STREAMS

        js = self.admin.jetstream()
        while True:
            found: dict[str, list[str]] = {}
            for s in STREAMS:
                for info in await js.consumers_info(s.name):
                    if info.name in WORKERS:
                        found.setdefault(info.name, []).append(s.name)
            if set(found) == set(WORKERS):
                self.streams_of = found
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"consumers missing after 300 s: {found}")
            self.supervise()
            await asyncio.sleep(0.5)

    async def last_seqs(self, worker: str) -> dict[str, int]:
        js = self.admin.jetstream()
        return {s: (await js.stream_info(s)).state.last_seq for s in self.streams_of[worker]}

    async def is_caught_up(self, worker: str, seqs: dict[str, int]) -> bool:
        js = self.admin.jetstream()
        for stream, seq in seqs.items():
            info = await js.consumer_info(stream, worker)
            idle = info.num_pending == 0 and info.num_ack_pending == 0
            if not idle and info.ack_floor.stream_seq < seq:
                return False
        return True

    async def follow(self, kill: Kill, killed_at: float) -> None:
        """Times the restarted process to its first ack, then to caught up."""
        while kill.resumed_s is None:
            since = self.acking_since(kill.worker)
            if since is not None:
                kill.resumed_s = since - killed_at
            await asyncio.sleep(0.02)
        while kill.caught_up_s is None:
            if await self.is_caught_up(kill.worker, kill.last_seqs):
                kill.caught_up_s = time.monotonic() - killed_at
            await asyncio.sleep(0.25)

    async def kill_loop(self, worker: str, load_s: float) -> None:
        """``kills_per_worker`` kills at random moments, one in each equal slot of the load;
        a kill waits until the previous restart acks again and has worked MIN_WORK_S."""
        rng = random.Random(f"{self.cfg.seed}-{worker}")
        slot = load_s / self.cfg.kills_per_worker
        for i in range(self.cfg.kills_per_worker):
            due = self.t0 + (i + rng.uniform(0.1, 0.9)) * slot
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            while (since := self.acking_since(worker)) is None:  # noqa: ASYNC110 - polls acks
                await asyncio.sleep(0.05)
            # Each restart works MIN_WORK_S before the next kill: a worker killed faster than
            # it can finish its first batches spends a delivery of the same messages per
            # kill, which is the poison guard's case (exhausted at max_deliver), not a crash's.
            await asyncio.sleep(max(0.0, since + MIN_WORK_S - time.monotonic()))
            seqs = await self.last_seqs(worker)
            killed_at = time.monotonic()
            self.kill9(worker)
            self.start(worker)
            kill = Kill(worker, round(killed_at - self.t0, 2), self.loading, seqs)
            self.kills.append(kill)
            self.tasks.append(asyncio.create_task(self.follow(kill, killed_at)))

    def stop_all(self) -> None:
        for t in self.tasks:
            t.cancel()
        for proc in self.procs.values():
            _servers.stop_process(proc)


# --- the run --------------------------------------------------------------------------------


async def all_idle(chaos: Chaos, db: asyncpg.Connection) -> tuple[bool, dict[str, int]]:
    """Every consumer of the five workers has nothing pending or unacked, and no work is
    left in a queue (embed queue, outboxes, parked states); with what is behind."""
    wanted = [(s, w) for w, streams in chaos.streams_of.items() for s in streams]
    infos = await consumers(chaos.admin, wanted)
    behind: Counter[str] = Counter()
    for key, info in infos.items():
        behind[key.split("/")[1]] += info.num_pending + info.num_ack_pending
    behind["embed_queue"] = int(await db.fetchval("SELECT count(*) FROM embedder.embed_queue"))
    behind["parked"] = int(await db.fetchval("SELECT count(*) FROM checkpoint.parked"))
    outboxes = await db.fetch(
        "SELECT table_schema || '.' || table_name AS t FROM information_schema.tables "
        "WHERE table_name IN ('event_outbox', 'outbox') AND table_schema <> 'runtime'"
    )
    for r in outboxes:
        behind["outbox"] += int(await db.fetchval(f"SELECT count(*) FROM {r['t']}"))
    return len(infos) == len(wanted) and not any(behind.values()), dict(behind)


async def load_and_kill(cfg: Config, chaos: Chaos, load: Load, db: asyncpg.Connection) -> float:
    """Publishes the events at the rate while the kill loops run; returns the load's
    seconds."""
    load_s = cfg.events / cfg.rate
    chaos.t0 = chaos.acks.t0 = time.monotonic()
    loops = [asyncio.create_task(chaos.kill_loop(w, load_s)) for w in WORKERS]
    sent, next_report = 0, chaos.t0 + PROGRESS_S
    target = cfg.events - cfg.active  # the closing session ends make up the rest
    while load.x.events < target:
        due = chaos.t0 + sent / cfg.rate
        if (now := time.monotonic()) < due:
            await asyncio.sleep(due - now)
        await load.publish_next()
        sent += 1
        if sent % 200 == 0:
            chaos.supervise()
        if time.monotonic() >= next_report:
            next_report += PROGRESS_S
            _, behind = await all_idle(chaos, db)
            console.log(
                f"{time.monotonic() - chaos.t0:5.0f}s published {load.x.events:,}; "
                f"{len(chaos.kills)} kills; behind: {behind}"
            )
    for event in load.chat.closing():
        await load.chat.publish(event)
    chaos.loading = False
    published_s = time.monotonic() - chaos.t0
    console.log(f"published {load.x.events:,} events in {published_s:.0f}s; kills go on")
    await asyncio.gather(*loops)
    return published_s


async def drain(cfg: Config, chaos: Chaos, db: asyncpg.Connection) -> bool:
    """Until everything is consumed and stays so for 3 s (outboxes publish after commit,
    so a quiet moment may be followed by more), or the timeout."""
    deadline = time.monotonic() + cfg.drain_timeout_s
    quiet_since: float | None = None
    next_report = time.monotonic() + PROGRESS_S
    while time.monotonic() < deadline:
        chaos.supervise()
        idle, behind = await all_idle(chaos, db)
        if not idle:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= 3.0:
            return True
        if time.monotonic() >= next_report:
            next_report += PROGRESS_S
            console.log(f"draining; behind: {behind}")
        await asyncio.sleep(0.5)
    console.log("[red]the workers did not catch up in time")
    return False


async def run(cfg: Config, servers: _servers.Servers) -> dict[str, Any]:
    from services.catalog import migrate
    from services.runtime.bus_setup import connect, setup_bus

    db_url = servers.urls["DATABASE_URL"]
    await migrate(db_url)
    console.log(f"bus: {', '.join(await setup_bus(servers.urls['NATS_URL']))}")
    admin = await connect(servers.urls["NATS_URL"])
    producer_nc = await connect(servers.nats_users["producer"])
    db = await asyncpg.connect(db_url)
    chaos = Chaos(cfg, servers, db_url, admin)
    await admin.subscribe("$JS.ACK.>", cb=chaos.on_ack)
    load = Load(cfg, producer_nc)
    started = time.monotonic()
    try:
        for w in WORKERS:
            chaos.start(w)
        await chaos.wait_for_consumers()
        console.log(f"the five workers are up; logs in {servers.logs}")
        published_s = await load_and_kill(cfg, chaos, load, db)
        drained = await drain(cfg, chaos, db)
        caught_up_s = time.monotonic() - chaos.t0
        await asyncio.sleep(1.0)  # the last acks reach our $JS.ACK subscription
        for t in chaos.tasks:  # a kill's catch-up the poller has not seen yet: it has now
            # (one whose process never acked again stays None: reported as not resumed)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(t, 10)
        result = await verdict(cfg, load, chaos, db)
        result.update(
            drained=drained,
            load_s=round(published_s, 1),
            caught_up_after_start_s=round(caught_up_s, 1),
            total_s=round(time.monotonic() - started, 1),
        )
    finally:
        chaos.stop_all()
        await db.close()
        await producer_nc.close()
        await admin.close()
    return result


# --- what must be stored --------------------------------------------------------------------


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def check_embedder(load: Load, db: asyncpg.Connection) -> dict[str, Any]:
    """One chunk per live embedded message and per memory (texts are short: one chunk),
    holding its current text, with exactly one vector; nothing for a deleted message."""
    x = load.x
    rows = await db.fetch(
        """SELECT c.tenant_id, c.source_type, c.source_id, c.chunk_index, c.text,
                  count(v.chunk_id) AS vectors
             FROM embedder.chunks c LEFT JOIN embedder.chunk_vectors v USING (chunk_id)
            GROUP BY c.chunk_id"""
    )
    chunks: dict[tuple[str, str, uuid.UUID], list[asyncpg.Record]] = {}
    for r in rows:
        chunks.setdefault((r["tenant_id"], r["source_type"], r["source_id"]), []).append(r)
    want: dict[tuple[str, str, uuid.UUID], str | None] = {}  # None: any text (a summary)
    for mid, (tenant, _role, text) in x.texts.items():
        if mid not in x.deleted:
            want[(tenant, "message", mid)] = text
    for mem_id, m in load.memories.expected.items():
        want[(m.tenant, "memory", mem_id)] = m.text
    summaries = await db.fetch(
        "SELECT tenant_id, memory_id FROM memory.memories WHERE origin = 'session'"
    )
    for r in summaries:
        want[(r["tenant_id"], "memory", r["memory_id"])] = None
    lost: list[Any] = []
    wrong_text: list[Any] = []
    no_vector: list[Any] = []
    twice: list[Any] = []
    for key, want_text in want.items():
        got = chunks.get(key, [])
        if not got:
            lost.append(key)
            continue
        indexes = Counter(r["chunk_index"] for r in got)
        if len(got) != 1 or max(indexes.values()) > 1:
            twice.append(key)
        if want_text is not None and "".join(r["text"] for r in got) != want_text:
            wrong_text.append(key)
        if any(r["vectors"] != 1 for r in got):
            (twice if any(r["vectors"] > 1 for r in got) else no_vector).append(key)
    deleted_kept = [k for k in chunks if k[1] == "message" and k[2] in x.deleted]
    unexpected = [k for k in chunks if k not in want and k not in deleted_kept]
    queue = int(await db.fetchval("SELECT count(*) FROM embedder.embed_queue"))
    distinct_texts = len({(t, sha(text)) for t, _, text in x.texts.values()}) + len(
        {(m.tenant, sha(m.text)) for m in load.memories.expected.values()}
    )

    def show(keys: list[Any]) -> list[str]:
        return [f"{k[0]}/{k[1]}/{k[2]}" for k in keys[:20]]

    result = {
        "sources_expected": len(want),
        "chunks": len(rows),
        "vectors": sum(int(r["vectors"]) for r in rows),
        "distinct_texts_published": distinct_texts,
        "session_summaries_chunked": len(summaries),
        "sources_without_chunk": show(lost),
        "chunks_with_wrong_text": show(wrong_text),
        "chunks_without_vector": show(no_vector),
        "duplicated_chunks_or_vectors": show(twice),
        "deleted_messages_with_chunks": show(deleted_kept),
        "unexpected_sources": show(unexpected),
        "embed_queue_left": queue,
    }
    result["lost"] = len(lost) + len(no_vector)
    result["duplicated"] = len(twice) + len(deleted_kept) + len(unexpected)
    result["ok"] = not (result["lost"] or result["duplicated"] or wrong_text or queue)
    return result


async def check_memory(load: Load, db: asyncpg.Connection) -> dict[str, Any]:
    """Each written memory once, with the type, text, content and importance of its last
    write and a vector of that text; one summary memory per ended session with messages."""
    rows = await db.fetch(
        """SELECT tenant_id, memory_id, memory_type, status, text, content, importance,
                  origin, embedding IS NOT NULL AS has_vector, content_hash
             FROM memory.memories"""
    )
    by_id = {r["memory_id"]: r for r in rows if r["origin"] == "write"}
    lost, wrong, no_vector = [], [], []
    for mid, m in load.memories.expected.items():
        r = by_id.get(mid)
        if r is None or r["tenant_id"] != m.tenant or r["status"] != "active":
            lost.append(str(mid))
            continue
        content = json.loads(r["content"]) if isinstance(r["content"], str) else r["content"]
        if (
            r["memory_type"] != m.memory_type
            or r["text"] != m.text
            or essence(m.memory_type, content) != m.content
            or abs(float(r["importance"]) - m.importance) > 1e-6
        ):
            wrong.append(str(mid))
        if not r["has_vector"] or bytes(r["content_hash"]).hex() != sha(m.text):
            no_vector.append(str(mid))
    unexpected = [str(i) for i in by_id if i not in load.memories.expected]
    x = load.x
    from services.memory.logic import derived_id

    summaries = {r["memory_id"]: r for r in rows if r["origin"] == "session"}
    want_summaries = {
        derived_id("session", t, s) for (t, s) in x.ended if x.session_messages.get((t, s))
    }
    other = Counter(r["origin"] for r in rows if r["origin"] not in ("write", "session"))
    result: dict[str, Any] = {
        "memories_expected": len(load.memories.expected),
        "memory_writes_published": x.by_type.get("memory.write", 0),
        "memories_stored": len(by_id),
        "memories_lost": lost[:20],
        "memories_wrong_content": wrong[:20],
        "memories_without_vector_of_their_text": no_vector[:20],
        "memories_unexpected": unexpected[:20],
        "summaries_expected": len(want_summaries),
        "summaries_stored": len(summaries),
        "summaries_missing": [str(i) for i in list(want_summaries - set(summaries))[:20]],
        "summaries_unexpected": [str(i) for i in list(set(summaries) - want_summaries)[:20]],
        "summaries_without_vector": sum(1 for r in summaries.values() if not r["has_vector"]),
        "other_origins": dict(other),
    }
    missing_summaries = len(want_summaries - set(summaries))
    result["lost"] = len(lost) + len(no_vector) + missing_summaries
    result["duplicated"] = len(unexpected) + len(set(summaries) - want_summaries)
    result["ok"] = not (
        result["lost"] or result["duplicated"] or wrong or result["summaries_without_vector"]
    )
    return result


async def check_checkpointer(load: Load, db: asyncpg.Connection) -> dict[str, Any]:
    """Per state: version = patches published, the state = those patches applied in
    publish order, one transition per patch event; checkpoints at the version they were
    taken; no conflict, nothing parked."""
    s = load.states
    rows = await db.fetch(
        """SELECT a.state_id, a.tenant_id, a.user_id, a.agent_id, a.version,
                  a.local_state::text AS local, a.shared_state::text AS shared,
                  a.session_state::text AS session, a.persistent_state::text AS persistent,
                  (SELECT count(*) FROM checkpoint.transitions t WHERE t.state_id = a.state_id)
                      AS transitions,
                  (SELECT count(DISTINCT event_id) FROM checkpoint.transitions t
                    WHERE t.state_id = a.state_id) AS events
             FROM checkpoint.agent_states a"""
    )
    stored = {(r["tenant_id"], r["user_id"], r["agent_id"]): r for r in rows}
    wrong_version: list[dict[str, Any]] = []
    wrong_state: list[str] = []
    lost_states: list[StateKey] = []
    twice = 0
    for key, want in s.expected.items():
        r = stored.get(key)
        if r is None:
            lost_states.append(key)
            continue
        doc = {p: json.loads(r[p]) for p in state.PARTITIONS}
        if r["version"] != want.version or r["transitions"] != want.version:
            wrong_version.append(
                {
                    "state": "/".join(key),
                    "expected": want.version,
                    "version": r["version"],
                    "transitions": r["transitions"],
                }
            )
        if r["events"] != r["transitions"]:
            twice += int(r["transitions"]) - int(r["events"])
        if doc != want.doc:
            wrong_state.append("/".join(key))
    cps = {
        r["checkpoint_id"]: int(r["version"])
        for r in await db.fetch("SELECT checkpoint_id, version FROM checkpoint.checkpoints")
    }
    cp_lost = [str(c) for c in s.checkpoints if c not in cps]
    cp_wrong = [str(c) for c, (_, v) in s.checkpoints.items() if c in cps and cps[c] != v]
    conflicts = int(await db.fetchval("SELECT count(*) FROM checkpoint.conflicts"))
    parked = int(await db.fetchval("SELECT count(*) FROM checkpoint.parked"))
    patches = sum(w.version for w in s.expected.values())
    behind = sum(
        max(0, w.version - int(stored[k]["version"])) for k, w in s.expected.items() if k in stored
    )
    ahead = sum(
        max(0, int(stored[k]["version"]) - w.version) for k, w in s.expected.items() if k in stored
    )
    result: dict[str, Any] = {
        "states_expected": len(s.expected),
        "states_stored": len(rows),
        "patches_published": patches,
        "checkpoints_published": len(s.checkpoints),
        "checkpoints_stored": len(cps),
        "states_wrong_version": wrong_version[:20],
        "states_wrong_document": wrong_state[:20],
        "states_lost": ["/".join(k) for k in lost_states[:20]],
        "checkpoints_lost": cp_lost[:20],
        "checkpoints_at_wrong_version": cp_wrong[:20],
        "conflicts": conflicts,
        "parked_left": parked,
    }
    result["lost"] = behind + len(cp_lost) + sum(s.expected[k].version for k in lost_states)
    result["duplicated"] = ahead + twice + max(0, len(cps) - len(s.checkpoints))
    result["ok"] = not (
        result["lost"] or result["duplicated"] or wrong_version or wrong_state or cp_wrong
        or conflicts or parked or len(rows) != len(s.expected)
    )  # fmt: skip
    return result


async def check_audit(db_url: str, admin: NatsClient) -> dict[str, Any]:
    """One audit row per stored message of every stream, and every chain verifies."""
    from services.audit.verify import verify_database
    from services.runtime.bus import STREAMS

    conn = await asyncpg.connect(db_url)
    try:
        js = admin.jetstream()
        per: dict[str, dict[str, int]] = {}
        for s in STREAMS:
            stored = (await js.stream_info(s.name)).state.messages
            r = await conn.fetchrow(
                "SELECT count(*) AS n, count(DISTINCT stream_seq) AS d FROM audit.events "
                "WHERE stream = $1",
                s.name,
            )
            assert r is not None
            per[s.name] = {"stream": stored, "rows": int(r["n"]), "distinct": int(r["d"])}
        verified = await verify_database(conn)
    finally:
        await conn.close()
    result: dict[str, Any] = {
        "by_stream": per,
        "chains": verified.chains,
        "rows_verified": verified.rows,
        "chain_breaks": [str(b) for b in verified.breaks[:20]],
    }
    result["lost"] = sum(max(0, v["stream"] - v["distinct"]) for v in per.values())
    result["duplicated"] = sum(v["rows"] - v["distinct"] for v in per.values())
    result["ok"] = verified.ok and all(
        v["stream"] == v["rows"] == v["distinct"] for v in per.values()
    )
    return result


async def verdict(cfg: Config, load: Load, chaos: Chaos, db: asyncpg.Connection) -> dict[str, Any]:
    db_url = chaos.servers.urls["DATABASE_URL"]
    ingest = await check_ingest(load.x, db)
    ingest["inbox_rows"] = int(await db.fetchval("SELECT count(*) FROM ingest.inbox"))
    checks = {
        "ingest": ingest,
        "embedder": await check_embedder(load, db),
        "memory": await check_memory(load, db),
        "checkpointer": await check_checkpointer(load, db),
        "audit": await check_audit(db_url, chaos.admin),
    }
    letters = await dead_letters(chaos.admin)
    kills: dict[str, Any] = {}
    for w in WORKERS:
        mine = [k for k in chaos.kills if k.worker == w]
        resumed = [k.resumed_s for k in mine if k.resumed_s is not None]
        caught = [k.caught_up_s for k in mine if k.caught_up_s is not None]
        kills[w] = {
            "kills": len(mine),
            "during_load": sum(k.during_load for k in mine),
            "exits_by_itself": chaos.exits[w],
            "resume_p50_s": round(percentile(resumed, 0.5), 2) if resumed else None,
            "resume_max_s": round(max(resumed), 2) if resumed else None,
            "caught_up_p50_s": round(percentile(caught, 0.5), 2) if caught else None,
            "caught_up_max_s": round(max(caught), 2) if caught else None,
            "not_resumed": len(mine) - len(resumed),
        }
    x = load.x
    return {
        "events_published": x.events,
        "by_type": dict(x.by_type),
        "publish_retries": x.publish_retries,
        "checks": checks,
        "kills": kills,
        "kill_log": [vars(k) for k in chaos.kills],
        "dlq_depth": len(letters),
        "dead_letters_by_kind": dict(Counter(d.get("Engram-Dlq-Kind", "?") for d in letters)),
        "dead_letters_sample": letters[:20],
        "acks": chaos.acks.summary(),
        "deliveries_histogram": {str(k): v for k, v in sorted(chaos.acks.delivered_hist.items())},
        "ok": all(c["ok"] for c in checks.values()) and not letters,
    }


# --- report ---------------------------------------------------------------------------------


def table(cfg: Config, r: dict[str, Any]) -> Table:
    t = Table(
        title=f"kill -9 under load: {r['events_published']:,} events at {cfg.rate:g}/s, "
        f"{cfg.kills_per_worker} kills per worker"
    )
    for col in (
        "worker",
        "kills",
        "lost",
        "duplicated",
        "resume p50 / max",
        "caught up p50 / max",
        "exact",
    ):
        t.add_column(col, justify="left" if col == "worker" else "right")

    def pair(a: float | None, b: float | None) -> str:
        return "-" if a is None or b is None else f"{a:.1f} / {b:.1f} s"

    for w in WORKERS:
        k, c = r["kills"][w], r["checks"][w]
        t.add_row(
            w,
            f"{k['kills']}" + (f" (+{k['exits_by_itself']} exits)" if k["exits_by_itself"] else ""),
            f"{c['lost']:,}",
            f"{c['duplicated']:,}",
            pair(k["resume_p50_s"], k["resume_max_s"]),
            pair(k["caught_up_p50_s"], k["caught_up_max_s"]),
            "[green]yes[/]" if c["ok"] else "[red]NO[/]",
        )
    t.add_row("DLQ", "", "", "", "", "", f"{r['dlq_depth']} letters")
    return t


def details(r: dict[str, Any]) -> Table:
    t = Table(title="what was checked")
    t.add_column("worker")
    t.add_column("figures")
    c = r["checks"]
    i, e, m, s, a = (c[w] for w in WORKERS)
    t.add_row(
        "ingest",
        f"{i['rows_ingest_messages']:,} messages, {i['edits_expected']:,} edits, "
        f"{i['sessions_expected']:,} sessions ({i['sessions_wrong']} wrong), "
        f"{i['rows_ingest_conversations']:,} conversations, {i['inbox_rows']:,} inbox rows",
    )
    t.add_row(
        "embedder",
        f"{e['sources_expected']:,} sources, {e['chunks']:,} chunks, "
        f"{e['vectors']:,} vectors; {e['distinct_texts_published']:,} distinct texts "
        f"published (+{e['session_summaries_chunked']:,} summaries)",
    )
    t.add_row(
        "memory",
        f"{m['memories_stored']:,} / {m['memories_expected']:,} memories "
        f"({m['memory_writes_published']:,} writes), summaries "
        f"{m['summaries_stored']:,} / {m['summaries_expected']:,}",
    )
    t.add_row(
        "checkpointer",
        f"{s['states_stored']:,} states, {s['patches_published']:,} "
        f"patches, {s['checkpoints_stored']:,} / {s['checkpoints_published']:,} "
        f"checkpoints, {s['conflicts']} conflicts, {s['parked_left']} parked",
    )
    t.add_row(
        "audit",
        ", ".join(f"{k} {v['rows']:,}/{v['stream']:,}" for k, v in a["by_stream"].items())
        + f"; {a['chains']} chains, {len(a['chain_breaks'])} breaks",
    )
    return t  # fmt: skip


def parse_args(argv: list[str]) -> Config:
    p = _script.parser(__doc__)
    p.add_argument("--events", type=int, default=100_000, help="events published (100000)")
    p.add_argument("--rate", type=float, default=300.0, help="events/s published (300)")
    p.add_argument("--kills-per-worker", type=int, default=10, help="kill -9 per worker (10)")
    p.add_argument("--tenants", type=int, default=3)
    p.add_argument("--active", type=int, default=12, help="chat conversations at once (12)")
    p.add_argument("--states", type=int, default=300, help="agent states patched (300)")
    p.add_argument("--text-pool", type=int, default=1500, help="chat texts per tenant (1500)")
    p.add_argument("--chat-share", type=float, default=0.5, help="share of chat events (0.5)")
    p.add_argument("--memory-share", type=float, default=0.06, help="memory.write (0.06)")
    p.add_argument(
        "--worker-env", action="append", default=[], metavar="KEY=VALUE",
        help="a worker setting for every worker (repeatable), e.g. INGEST_ACK_WAIT_S=10",
    )  # fmt: skip
    p.add_argument("--drain-timeout-s", type=float, default=1800.0)
    p.add_argument("--seed", type=int, default=13)
    _script.add_run_options(p, out=_script.RESULTS / "chaos.json", out_help="JSON")
    a = p.parse_args(argv)
    return Config(
        events=a.events,
        rate=a.rate,
        kills_per_worker=a.kills_per_worker,
        tenants=a.tenants,
        active=a.active,
        states=a.states,
        text_pool=a.text_pool,
        chat_share=a.chat_share,
        memory_share=a.memory_share,
        worker_env=_script.settings(a.worker_env),
        drain_timeout_s=a.drain_timeout_s,
        data_dir=a.data_dir,
        out=a.out,
        live_code=a.live_code,
        seed=a.seed,
    )


def main(argv: list[str]) -> int:
    cfg = parse_args(argv)
    done = _script.measure(__file__, argv, cfg, console, lambda s: run(cfg, s))
    result = done.result
    console.print(table(cfg, result))
    console.print(details(result))
    console.print(
        "[green]nothing lost or doubled[/]" if result["ok"] else "[red]LOSS OR DUPLICATE[/]"
    )
    report = {
        **_script.report_head("chaos", cfg, done),
        "worker_env": {**DEFAULT_WORKER_ENV, **cfg.worker_env},
        "result": result,
    }
    _script.write(cfg.out, report, console)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
