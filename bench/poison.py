#!/usr/bin/env python
"""Poison benchmark: invalid and never-applicable events among good ones (issue 13).

    .venv/bin/python bench/poison.py [--good 50000] [--invalid 1000] [--failing 100] [--runs 3]
    .venv/bin/python bench/poison.py --quick     # 5,000 good + 100 invalid + 10 failing, 1 run

Starts the embedded nats-server and PostgreSQL (DevStack, with every service's NATS user)
and runs the real `engram run ingest` process, logged in as its own PostgreSQL role and
NATS user. It builds realistic chat traffic once (bench/outage.py's producer: conversations,
sessions, user/assistant turns with token counts; plus edits of messages sent a little
earlier). Per run, on fresh streams and a fresh database cloned from a migrated template,
with the worker warmed up, it publishes the good events at a steady --rate, and times each
from its publish call until it is applied (its inbox row, committed with its effects, seen
by a poller; and the worker's +ACK on ``$JS.ACK.>``).

  clean run:     only the good events.
  poisoned run:  the same good events, with --invalid events that break the contract in
                 several ways and --failing valid events that can never be applied (edits of
                 messages that never arrive), at random positions among them.

Clean and poisoned runs alternate. After each run it waits until the worker has nothing
pending (the failing events are dead-lettered as ``exhausted`` after INGEST_MAX_DELIVER
deliveries: ~2 min with the defaults), then checks that every good event was applied once
(rows, versions, session counters, inbox rows: exact) and every bad one is in the DLQ once
with the right ``Engram-Dlq-Kind`` and a reason. Prints a table per run and the medians;
the goal is poisoned p99 / clean p99 <= 1.10. Writes bench/results/poison.json (exit code 1
when a check fails).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH, so a snapshot there wins

import asyncpg  # noqa: E402
from nats.aio.client import Client as NatsClient  # noqa: E402
from rich.table import Table  # noqa: E402

from bench import _latency, _script, _servers  # noqa: E402
from bench._figures import CpuMeter, loadavg, percentile  # noqa: E402
from bench._latency import Outgoing, steady_publish  # noqa: E402
from bench._servers import (  # noqa: E402
    Postgres,
    consumer_info,
    engram_cmd,
    fresh_streams,
    start_process,
    stop_process,
    wait_consumer,
    worker_login,
)
from bench._traffic import Expected, Producer, check_ingest, dead_letters, record  # noqa: E402
from contracts import chat  # noqa: E402

TEMPLATE_DB = "poison_template"
GOAL_P99_RATIO = 1.10
# Applied = its row in the inbox, which commits in the same transaction as its effects.
APPLIED_SQL = "SELECT event_id FROM ingest.inbox WHERE event_id = ANY($1::uuid[])"
EDIT_SHARE = 0.06  # of the turns: an edit of a recent message instead
DELETE_SHARE = 0.02  # a (soft) delete

console = _script.console()


# --- the traffic --------------------------------------------------------------------------


def chat_traffic(n: int, tenants: int, active: int, seed: int) -> list[chat.ChatEnvelope]:
    """``n`` events of bench/_traffic.py's producer (only its generator: nothing is published
    through it): conversations, sessions, user/assistant turns with token counts, edits and
    deletes of recent messages, session ends."""
    traffic = Producer(
        NatsClient(),
        tenants,
        active,
        seed,
        edit_share=EDIT_SHARE,
        delete_share=DELETE_SHARE,
        producer="bench-poison",
    )
    return [traffic.next_event() for _ in range(n)]


def expected_of(events: list[chat.ChatEnvelope]) -> Expected:
    x = Expected()
    for event in events:
        x.events += 1
        x.by_type[event.type] += 1
        record(x, event)
    return x


@dataclass(frozen=True)
class Bad:
    kind: str  # the Engram-Dlq-Kind it must get: invalid / exhausted
    variant: str
    subject: str
    data: bytes
    event_id: uuid.UUID | None  # what the inbox would hold, had it been applied


def _break(event: chat.ChatEnvelope, change: Callable[[dict[str, Any]], object]) -> bytes:
    data = json.loads(event.model_dump_json())
    data["event_id"] = str(uuid.uuid4())  # never one of the good events' ids
    change(data)
    return json.dumps(data).encode()


def _parent(data: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    *parents, last = path.split(".")
    for key in parents:
        data = data[key]
    return data, last


def _del(path: str) -> Callable[[dict[str, Any]], object]:
    def change(data: dict[str, Any]) -> None:
        parent, key = _parent(data, path)
        del parent[key]

    return change


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], object]:
    def change(data: dict[str, Any]) -> None:
        parent, key = _parent(data, path)
        parent[key] = value

    return change


# (variant, template event type, subject (None: its own), the change of its JSON)
# fmt: off
INVALID: list[tuple[str, str, str | None, Callable[[chat.ChatEnvelope], bytes]]] = [
    ("truncated JSON", "chat.message.created", None, lambda e: e.model_dump_json().encode()[:70]),
    ("not UTF-8", "chat.message.created", None, lambda e: b"\xff\xfe\xfa garbage \x80"),
    ("JSON array", "chat.message.created", None, lambda e: b"[1, 2, 3]"),
    ("tokens a string", "chat.message.created", None,
     lambda e: _break(e, _set("payload.metadata.tokens", "many"))),
    ("role a number", "chat.message.created", None, lambda e: _break(e, _set("payload.role", 42))),
    ("no content", "chat.message.created", None, lambda e: _break(e, _del("payload.content"))),
    ("no event_id", "chat.message.created", None, lambda e: _break(e, _del("event_id"))),
    ("no occurred_at", "chat.session.started", None, lambda e: _break(e, _del("occurred_at"))),
    ("title over 500 chars", "chat.conversation.created", None,
     lambda e: _break(e, _set("payload.title", "long title " * 60))),
    ("sender_user_id over 200", "chat.message.created", None,
     lambda e: _break(e, _set("payload.sender_user_id", "u" * 300))),
    ("unknown type", "chat.message.created", "chat.message.reacted",
     lambda e: _break(e, _set("type", "chat.message.reacted"))),
    ("type not its subject", "chat.message.created", "chat.message.edited",
     lambda e: _break(e, lambda d: None)),
    ("message_id not a UUID", "chat.message.created", None,
     lambda e: _break(e, _set("payload.message_id", "not-a-uuid"))),
    ("no time zone", "chat.message.created", None,
     lambda e: _break(e, _set("occurred_at", "2026-11-01T09:00:00"))),
    ("schema 2.0", "chat.session.started", None,
     lambda e: _break(e, _set("schema_version", "2.0"))),
    ("negative tokens", "chat.message.created", None,
     lambda e: _break(e, _set("payload.metadata.tokens", -5))),
]
# fmt: on


def bad_events(invalid: int, failing: int, tenants: int, seed: int) -> list[Bad]:
    """``invalid`` events cycling through INVALID (each built from a realistic event of
    its own traffic, never published as a good one) and ``failing`` edits of messages that
    never arrive, in random order."""
    rng = random.Random(seed)
    pool: dict[str, list[chat.ChatEnvelope]] = {}
    for event in chat_traffic(2_000, tenants, 8, seed):
        pool.setdefault(event.type, []).append(event)
    out: list[Bad] = []
    for i in range(invalid):
        variant, template, subject, make = INVALID[i % len(INVALID)]
        event = rng.choice(pool[template])
        data = make(event)
        try:
            event_id: uuid.UUID | None = uuid.UUID(json.loads(data)["event_id"])
        except (ValueError, KeyError, TypeError):
            event_id = None
        out.append(Bad("invalid", variant, subject or template, data, event_id))
    for _ in range(failing):
        edit = chat.MessageEdited(
            event_id=uuid.uuid4(),
            tenant_id=f"tenant-{rng.randrange(tenants)}",
            producer="bench-poison",
            occurred_at=datetime.now(UTC),
            payload=chat.MessageEditedPayload(
                message_id=uuid.uuid4(), content="an edit of nothing", edited_by="u-1"
            ),
        )
        out.append(
            Bad(
                "exhausted",
                "edit, message never sent",
                edit.type,
                edit.model_dump_json().encode(),
                edit.event_id,
            )
        )
    rng.shuffle(out)
    return out


def interleave(good: list[Outgoing], bad: list[Bad], seed: int) -> list[Outgoing]:
    """The good events in their order, the bad ones at random positions among them."""
    rng = random.Random(seed)
    at = sorted(rng.sample(range(len(good) + len(bad)), len(bad)))
    out, g, b = [], iter(good), iter(bad)
    spots = set(at)
    for i in range(len(good) + len(bad)):
        if i in spots:
            x = next(b)
            out.append(
                Outgoing(x.subject, x.data, {"Nats-Msg-Id": f"bad:{uuid.uuid4()}"}, None, False)
            )
        else:
            out.append(next(g))
    return out


# --- one run ------------------------------------------------------------------------------


@dataclass
class Config:
    good: int
    invalid: int
    failing: int
    runs: int
    rate: int
    warmup: int
    tenants: int
    active: int
    seed: int
    drain_timeout_s: float
    ingest_env: dict[str, str]
    data_dir: Path | None
    out: Path
    live_code: bool


@dataclass
class Plan:
    """The traffic of every run, built once."""

    warmup: list[Outgoing]
    clean: list[Outgoing]
    poisoned: list[Outgoing]
    bad: list[Bad]  # in the order they appear in ``poisoned``
    expected: Expected  # of the warm-up and the good events


def make_plan(cfg: Config) -> Plan:
    events = chat_traffic(cfg.warmup + cfg.good, cfg.tenants, cfg.active, cfg.seed)
    good = [
        Outgoing(e.type, e.model_dump_json().encode(), e.headers(), e.event_id, True)
        for e in events
    ]
    for i in range(cfg.warmup):
        good[i] = Outgoing(good[i].subject, good[i].data, good[i].headers, good[i].key, False)
    bad = bad_events(cfg.invalid, cfg.failing, cfg.tenants, cfg.seed + 1)
    poisoned = interleave(good[cfg.warmup :], bad, cfg.seed + 2)
    return Plan(good[: cfg.warmup], good[cfg.warmup :], poisoned, bad, expected_of(events))


def worker_env(cfg: Config, servers: _servers.Servers, url: str) -> dict[str, str]:
    env = {"NATS_URL": servers.nats_users["ingest"], "DATABASE_URL": worker_login(url, "ingest")}
    env.update({k: v for k, v in os.environ.items() if k.startswith("INGEST_")})
    env.update(cfg.ingest_env)
    return env


async def drain(admin: NatsClient, proc: Any, want_letters: int, limit_s: float) -> float | None:
    """Until the worker has nothing pending or unacked and the DLQ holds ``want_letters``;
    the seconds it took (None: not within ``limit_s``)."""
    js, t0, next_note = admin.jetstream(), time.monotonic(), time.monotonic() + 30
    while time.monotonic() - t0 < limit_s:
        info = await consumer_info(js, "ingest")
        letters = (await js.stream_info("DLQ")).state.messages
        idle = info is not None and info.num_pending == 0 and info.num_ack_pending == 0
        if idle and letters >= want_letters:
            return time.monotonic() - t0
        if proc.poll() is not None:
            raise RuntimeError(f"engram run ingest exited ({proc.returncode})")
        if time.monotonic() > next_note:
            next_note += 30
            console.log(
                f"  waiting: {letters:,}/{want_letters:,} dead letters, "
                f"{info.num_ack_pending if info else '?'} unacked"
            )
        await asyncio.sleep(0.25)
    return None


async def check_rows(db: asyncpg.Connection, x: Expected, bad: list[Bad]) -> dict[str, Any]:
    """The good events' effects, exact (bench/_traffic.py's check of the ingest tables), and
    one inbox row for each good event and none for a bad one; read as the superuser."""
    result = await check_ingest(x, db)
    result["inbox_rows"] = int(await db.fetchval("SELECT count(*) FROM ingest.inbox"))
    result["inbox_rows_expected"] = x.events
    bad_ids = [b.event_id for b in bad if b.event_id is not None]
    result["inbox_rows_of_bad_events"] = int(
        await db.fetchval("SELECT count(*) FROM ingest.inbox WHERE event_id = ANY($1)", bad_ids)
    )
    result["ok"] = bool(
        result["ok"] and result["inbox_rows"] == x.events and not result["inbox_rows_of_bad_events"]
    )
    return result


def check_letters(letters: list[dict[str, str]], bad_seqs: dict[int, Bad]) -> dict[str, Any]:
    """Every bad event dead-lettered once, with its kind and a reason; nothing else."""
    seen: Counter[int] = Counter()
    wrong_kind, no_reason, strays = 0, 0, 0
    by_variant: Counter[str] = Counter()
    reasons: dict[str, str] = {}
    for letter in letters:
        seq = int(letter.get("Engram-Original-Sequence", "0"))
        bad = bad_seqs.get(seq)
        if bad is None:
            strays += 1
            continue
        seen[seq] += 1
        reason = letter.get("Engram-Dlq-Reason", "").strip()
        wrong_kind += letter.get("Engram-Dlq-Kind") != bad.kind
        no_reason += not reason
        by_variant[bad.variant] += 1
        reasons.setdefault(bad.variant, reason[:160])
    out = {
        "letters": len(letters),
        "bad_published": len(bad_seqs),
        "missing": sum(1 for s in bad_seqs if s not in seen),
        "more_than_once": sum(1 for n in seen.values() if n > 1),
        "wrong_kind": wrong_kind,
        "no_reason": no_reason,
        "not_bad_events": strays,
        "by_kind": dict(Counter(x.get("Engram-Dlq-Kind", "?") for x in letters)),
        "by_variant": dict(by_variant),
        "reason_per_variant": reasons,
    }
    out["ok"] = not any(
        out[k] for k in ("missing", "more_than_once", "wrong_kind", "no_reason", "not_bad_events")
    )
    return out


def latency_figures(timings: _latency.Timings, published: int) -> dict[str, Any]:
    poll = [1000 * v for v in timings.by_poll.values()]
    ack = [1000 * v for v in timings.by_ack.values()]
    out: dict[str, Any] = {
        "good_timed": published,
        "seen_by_poll": len(poll),
        "seen_by_ack": len(ack),
        "achieved_rate": timings.achieved_rate,
    }
    # Where in the run the slow ones were: p50 / p99 of each tenth of the good events, in
    # publish order (a backlog builds and drains; a spike stays local).
    ordered = [1000 * timings.by_poll[i] for i in sorted(timings.by_poll)]
    tenth = max(1, len(ordered) // 10)
    chunks = [ordered[i : i + tenth] for i in range(0, len(ordered), tenth)]
    out["p50_by_tenth_ms"] = [round(percentile(c, 0.5), 1) for c in chunks]
    out["p99_by_tenth_ms"] = [round(percentile(c, 0.99), 1) for c in chunks]
    for name, values in (("", poll), ("ack_", ack)):
        for q in (0.5, 0.95, 0.99):
            out[f"{name}p{round(q * 100)}_ms"] = percentile(values, q)
        out[f"{name}max_ms"] = max(values, default=float("nan"))
    return out


async def run_once(  # noqa: PLR0917
    cfg: Config, servers: _servers.Servers, pg: Postgres, plan: Plan, run: int, poisoned: bool
) -> dict[str, Any]:
    label = f"run {run} {'poisoned' if poisoned else 'clean'}"
    items = plan.poisoned if poisoned else plan.clean
    admin = await _common_connect(servers.urls["NATS_URL"])
    js = admin.jetstream(publish_async_max_pending=4000)
    name = f"poison_r{run}_{'p' if poisoned else 'c'}"
    result: dict[str, Any] = {"run": run, "poisoned": poisoned, "loadavg_at_start": loadavg()}
    x = plan.expected
    result["expected"] = {
        "good_events": x.events,
        "messages": x.messages,
        "conversations": x.by_type["chat.conversation.created"],
        "edits": len(x.edit_events),
        "deletes": len(x.deleted),
        "bad_events": len(plan.bad) if poisoned else 0,
    }
    try:
        await fresh_streams(js)
        url = await pg.clone(name, TEMPLATE_DB)
        db = await asyncpg.connect(url)
        log = servers.logs / f"{name}.log"
        proc = start_process(engram_cmd("ingest"), worker_env(cfg, servers, url), log)
        try:
            await wait_consumer(js, "ingest", proc)
            await pg.checkpoint()
            await steady_publish(admin, js, db, plan.warmup, rate=cfg.rate, poll_sql=APPLIED_SQL)
            meter = CpuMeter(servers.pids, {"worker": proc})
            cpu: dict[str, float] = {}
            console.log(f"{label}: publishing {len(items):,} events at {cfg.rate:,}/s")
            meter.start()
            timings = await steady_publish(
                admin,
                js,
                db,
                items,
                rate=cfg.rate,
                poll_sql=APPLIED_SQL,
                settled=lambda: cpu.update(meter.stop(len(items))),
            )
            result["latency"] = latency_figures(timings, sum(1 for i in items if i.timed))
            result["cpu"] = cpu
            bad_seqs = (
                {
                    seq: plan.bad[n]
                    for n, seq in enumerate(
                        s for s, i in zip(timings.seqs, items, strict=True) if i.key is None
                    )
                }
                if poisoned
                else {}
            )
            result["drain_s"] = await drain(admin, proc, len(bad_seqs), cfg.drain_timeout_s)
            result["rows"] = await check_rows(db, plan.expected, plan.bad)
            result["dlq"] = check_letters(await dead_letters(admin), bad_seqs)
            info = await consumer_info(js, "ingest")
            result["num_redelivered"] = info.num_redelivered if info else None
        finally:
            stop_process(proc, 25.0)
            await db.close()
        text = log.read_text(errors="replace")
        result["worker_log"] = {
            "dead_lettered_lines": text.count("dead-lettered "),
            "error_lines": text.count(" ERROR "),
        }
        await pg.drop(name)
    finally:
        await admin.close()
    result["ok"] = bool(
        result["rows"]["ok"] and result["dlq"]["ok"] and result["drain_s"] is not None
    )
    lat = result["latency"]
    console.log(
        f"{label}: p50 {lat['p50_ms']:.1f} / p99 {lat['p99_ms']:.1f} ms (by ack "
        f"{lat['ack_p99_ms']:.1f}); {result['dlq']['letters']:,} dead letters; drained in "
        f"{result['drain_s'] or float('nan'):.0f}s; checks {'ok' if result['ok'] else 'FAILED'}"
    )
    console.log(f"  p99 by tenth of the run (ms): {lat['p99_by_tenth_ms']}")
    return result


async def _common_connect(url: str) -> NatsClient:
    from services.runtime.bus_setup import connect

    return await connect(url)


# --- reporting ----------------------------------------------------------------------------

FIGURES: list[tuple[str, str, Callable[[dict[str, Any]], float], str]] = [
    ("good p50 (ms)", "p50_ms", lambda r: r["latency"]["p50_ms"], ".1f"),
    ("good p95 (ms)", "p95_ms", lambda r: r["latency"]["p95_ms"], ".1f"),
    ("good p99 (ms)", "p99_ms", lambda r: r["latency"]["p99_ms"], ".1f"),
    ("good max (ms)", "max_ms", lambda r: r["latency"]["max_ms"], ".1f"),
    ("good p99 by ack (ms)", "ack_p99_ms", lambda r: r["latency"]["ack_p99_ms"], ".1f"),
    ("publish rate achieved (/s)", "rate", lambda r: r["latency"]["achieved_rate"], ",.0f"),
    ("worker CPU µs/event", "worker_us", lambda r: r["cpu"].get("worker_us_per_event", 0), ".0f"),
    ("PostgreSQL CPU µs/event", "pg_us", lambda r: r["cpu"].get("postgres_us_per_event", 0), ".0f"),
    ("other sessions' load (cores)", "others", lambda r: r["cpu"].get("others_cores", 0), ".2f"),
    ("drained after publishing (s)", "drain_s", lambda r: r["drain_s"] or float("nan"), ".1f"),
]


def run_table(r: dict[str, Any]) -> Table:
    kind = "poisoned" if r["poisoned"] else "clean"
    t = Table(title=f"run {r['run']}, {kind}")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("expected", justify="right")
    for label, _, get, fmt in FIGURES:
        t.add_row(label, format(get(r), fmt), "")
    rows = r["rows"]
    x = r["expected"]
    for label, got, want in (
        ("rows in ingest.messages", rows["rows_ingest_messages"], x["messages"]),
        ("rows in ingest.conversations", rows["rows_ingest_conversations"], x["conversations"]),
        ("inbox rows (good events applied)", rows["inbox_rows"], rows["inbox_rows_expected"]),
        ("inbox rows of bad events", rows["inbox_rows_of_bad_events"], 0),
        ("sessions stored", rows["sessions_stored"], rows["sessions_expected"]),
        ("sessions with wrong counters", rows["sessions_wrong"], 0),
        ("total_tokens over sessions", rows["tokens_stored"], rows["tokens_expected"]),
        ("edits lost / stored twice", len(rows["edits_lost"]) + len(rows["edits_stored_twice"]), 0),
        (
            "messages with a wrong version / deleted",
            len(rows["messages_wrong_version"]) + len(rows["messages_wrong_deleted"]),
            0,
        ),
    ):
        t.add_row(label, f"{got:,}", f"{want:,}")
    d = r["dlq"]
    t.add_row("dead letters", f"{d['letters']:,}", f"{d['bad_published']:,}")
    for kind_name, n in sorted(d["by_kind"].items()):
        t.add_row(f"  {kind_name}", f"{n:,}", "")
    for key in ("missing", "more_than_once", "wrong_kind", "no_reason", "not_bad_events"):
        t.add_row(f"  {key.replace('_', ' ')}", f"{d[key]:,}", "0")
    t.add_row("num_redelivered", str(r["num_redelivered"]), "")
    return t


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("clean", "poisoned"):
        chosen = [r for r in runs if r["poisoned"] == (kind == "poisoned")]
        out[kind] = {key: statistics.median(get(r) for r in chosen) for _, key, get, _ in FIGURES}
    pairs = [
        (c["latency"]["p99_ms"], p["latency"]["p99_ms"])
        for c, p in zip(
            [r for r in runs if not r["poisoned"]], [r for r in runs if r["poisoned"]], strict=False
        )
    ]
    out["p99_ratio"] = out["poisoned"]["p99_ms"] / out["clean"]["p99_ms"]
    out["p99_ratio_by_ack"] = out["poisoned"]["ack_p99_ms"] / out["clean"]["ack_p99_ms"]
    out["p99_ratio_per_pair"] = [p / c for c, p in pairs]
    out["checks_ok"] = all(r["ok"] for r in runs)
    return out


def summary_table(s: dict[str, Any], runs: int) -> Table:
    t = Table(title=f"medians of {runs} clean and {runs} poisoned runs")
    t.add_column("measure")
    t.add_column("clean", justify="right")
    t.add_column("poisoned", justify="right")
    for label, key, _, fmt in FIGURES:
        t.add_row(label, format(s["clean"][key], fmt), format(s["poisoned"][key], fmt))
    verdict = "PASS" if s["p99_ratio"] <= GOAL_P99_RATIO else "FAIL"
    pairs = ", ".join(f"{x:.2f}" for x in s["p99_ratio_per_pair"])
    t.add_row(
        f"poisoned p99 / clean p99 (goal <= {GOAL_P99_RATIO})",
        f"{s['p99_ratio']:.2f}: {verdict}",
        f"by run: {pairs}",
    )
    t.add_row("same, timed by ack", f"{s['p99_ratio_by_ack']:.2f}", "")
    checks = "every run exact" if s["checks_ok"] else "FAILED (see the runs)"
    t.add_row("good applied once, bad dead-lettered once", checks, "")
    return t


# --- main ---------------------------------------------------------------------------------


async def bench(cfg: Config, servers: _servers.Servers) -> list[dict[str, Any]]:
    pg = Postgres()
    pg.admin_url = servers.admin_url
    await pg.migrated_template(TEMPLATE_DB, ["ingest"])
    admin = await _common_connect(servers.urls["NATS_URL"])
    await fresh_streams(admin.jetstream())  # the DLQ's body bucket too
    await admin.close()
    plan = make_plan(cfg)
    by_variant = Counter(b.variant for b in plan.bad)
    console.log(
        f"traffic: {cfg.warmup:,} warm-up + {len(plan.clean):,} good events "
        f"({dict(Counter(i.subject for i in plan.clean))}); poisoned adds {cfg.invalid:,} invalid "
        f"({len(by_variant) - (1 if cfg.failing else 0)} ways) and {cfg.failing:,} never applicable"
    )
    runs = []
    for run in range(1, cfg.runs + 1):
        for poisoned in (False, True):
            result = await run_once(cfg, servers, pg, plan, run, poisoned)
            console.print(run_table(result))
            runs.append(result)
    return runs


def parse_args(argv: list[str]) -> Config:
    parser = _script.parser(__doc__)
    parser.add_argument("--good", type=int, default=50_000, help="good events per run (50000)")
    parser.add_argument("--invalid", type=int, default=1_000, help="invalid events (1000)")
    parser.add_argument("--failing", type=int, default=100, help="never applicable (100)")
    parser.add_argument("--runs", type=int, default=3, help="clean + poisoned pairs (3)")
    parser.add_argument("--rate", type=int, default=1_000, help="events/s published (1000)")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up events (300)")
    parser.add_argument("--tenants", type=int, default=6)
    parser.add_argument("--active", type=int, default=60, help="conversations at once (60)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--drain-timeout-s", type=float, default=600.0)
    parser.add_argument(
        "--quick", action="store_true", help="5,000 good + 100 invalid + 10 failing, 1 run"
    )
    parser.add_argument(
        "--ingest-env",
        action="append",
        default=[],
        metavar="INGEST_X=V",
        help="a worker setting (repeatable); INGEST_* of ours are passed too",
    )
    _script.add_run_options(parser, out=None, out_help="JSON (bench/results/poison.json)")
    a = parser.parse_args(argv)
    if a.quick:
        a.good, a.invalid, a.failing, a.runs = 5_000, 100, 10, 1
    out = a.out or _script.RESULTS / ("poison-quick.json" if a.quick else "poison.json")
    env = _script.settings(a.ingest_env)
    return Config(
        a.good,
        a.invalid,
        a.failing,
        a.runs,
        a.rate,
        a.warmup,
        a.tenants,
        a.active,
        a.seed,
        a.drain_timeout_s,
        env,
        a.data_dir,
        out,
        a.live_code,
    )


def main(argv: list[str]) -> int:
    cfg = parse_args(argv)
    done = _script.measure(__file__, argv, cfg, console, lambda s: bench(cfg, s))
    from services.ingest.settings import IngestSettings  # the code measured, imported now

    runs = done.result
    summary = summarize(runs)
    console.print(summary_table(summary, cfg.runs))
    defaults = IngestSettings.model_fields
    report = {
        **_script.report_head("poison", cfg, done),
        "worker_settings": {
            "defaults": {
                k: defaults[k].default
                for k in ("max_deliver", "retry_base_s", "retry_max_s", "batch_size")
            },
            "overridden": {
                **{k: v for k, v in os.environ.items() if k.startswith("INGEST_")},
                **cfg.ingest_env,
            },
        },
        "goal": {"p99_ratio_max": GOAL_P99_RATIO, "met": summary["p99_ratio"] <= GOAL_P99_RATIO},
        "summary": summary,
        "runs": runs,
    }
    _script.write(cfg.out, report, console)
    return 0 if summary["checks_ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
