#!/usr/bin/env python
"""Reading conversations back: query.chat.history and query.chat.conversations latency.

    .venv/bin/python bench/chat_history.py [--messages 10000] [--requests 400] [--data-dir DIR]

Starts the embedded nats-server and PostgreSQL (in a temporary folder unless --data-dir),
migrates a database and fills it directly (SQL, as the superuser): one conversation of
``--messages`` messages (every tenth edited once, every fiftieth soft-deleted) among
``--others`` conversations of 100 messages each in three tenants, all of one agent.
Starts `engram run ingest` (its own role and NATS user, default settings) and asks,
one request at a time over NATS (the admin's connection):

  history first page   newest first, limit 50
  history deep page    the cursor of the page in the middle of the conversation
  history versions     first page with include_versions and include_deleted
  conversations        the agent's conversations (--others + 1 of them), limit 20

Baseline, in the same run and on the same database: the plain SELECT of the same 50
rows (asyncpg, the superuser's connection, no RLS, no NATS), so the ratio is the cost of
the query path (NATS round trip, validation, tenant scope, cursor, JSON). Prints p50/p99
of each and writes bench/results/chat_history.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

import asyncpg  # noqa: E402
import nats  # noqa: E402
import orjson  # noqa: E402
from rich.console import Console  # noqa: E402

from bench._code import SNAPSHOT_ENV, code_version, reexec_on_snapshot  # noqa: E402
from bench._figures import loadavg, percentile, write_report  # noqa: E402
from bench._servers import (  # noqa: E402
    Postgres,
    embedded_servers,
    engram_cmd,
    fresh_streams,
    start_process,
    stop_process,
    wait_consumer,
    worker_login,
)

console = Console()
RESULT = ROOT / "bench" / "results" / "chat_history.json"
CID = "6f1c3c1e-2b7a-4d8e-9a51-0e4f2a7b9c10"

FILL = """
INSERT INTO ingest.conversations (conversation_id, tenant_id, title, user_id, agent_id,
                                  created_at)
SELECT CASE WHEN i = 0 THEN $1::uuid ELSE gen_random_uuid() END,
       (ARRAY['acme', 'globex', 'initech'])[1 + i % 3], 'c' || i, 'u-' || (i % 50), 'bot',
       now() - interval '30 days'
  FROM generate_series(0, $2) i;
INSERT INTO ingest.messages (message_id, tenant_id, conversation_id, role, content,
                             content_type, tokens, created_at)
SELECT gen_random_uuid(), c.tenant_id, c.conversation_id,
       (ARRAY['user', 'assistant'])[1 + n % 2], repeat('word ', 40) || n, 'text', 60,
       c.created_at + n * interval '1 second'
  FROM ingest.conversations c
 CROSS JOIN LATERAL generate_series(1, CASE WHEN c.conversation_id = $1::uuid
                                            THEN $3::int ELSE 100 END) n;
INSERT INTO ingest.message_versions (message_id, version, tenant_id, content, content_type,
                                     event_id, created_at)
SELECT message_id, 1, tenant_id, content, content_type, gen_random_uuid(), created_at
  FROM ingest.messages;
WITH edited AS (
    SELECT message_id, tenant_id, created_at FROM ingest.messages
     WHERE conversation_id = $1::uuid AND tenant_id = 'acme'
       AND abs(hashtext(message_id::text)) % 10 = 0)
INSERT INTO ingest.message_versions (message_id, version, tenant_id, content, content_type,
                                     edited_by, event_id, created_at)
SELECT message_id, 2, tenant_id, 'edited', 'text', 'u-0', gen_random_uuid(),
       created_at + interval '1 minute' FROM edited;
UPDATE ingest.messages m SET version = 2, content = 'edited'
  FROM ingest.message_versions v
 WHERE v.tenant_id = m.tenant_id AND v.message_id = m.message_id AND v.version = 2;
UPDATE ingest.messages SET deleted_at = created_at, deleted_by = 'u-0'
 WHERE conversation_id = $1::uuid AND abs(hashtext(message_id::text)) % 50 = 1;
UPDATE ingest.conversations c SET message_count = m.count, total_tokens = m.tokens,
       last_message_at = m.last
  FROM (SELECT tenant_id, conversation_id, count(*) AS count, sum(tokens) AS tokens,
               max(created_at) AS last
          FROM ingest.messages GROUP BY 1, 2) m
 WHERE c.tenant_id = m.tenant_id AND c.conversation_id = m.conversation_id;
ANALYZE;
"""
PLAIN = """SELECT * FROM ingest.messages
 WHERE tenant_id = 'acme' AND conversation_id = $1 AND deleted_at IS NULL
 ORDER BY created_at DESC, message_id DESC LIMIT 50"""


async def timed(n: int, call: Any) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def summary(times: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(times, 0.5), 3),
        "p99_ms": round(percentile(times, 0.99), 3),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with embedded_servers(args.data_dir, "engram-bench-chat-", console) as servers:
        pg = Postgres()
        pg.admin_url = servers.admin_url
        url = await pg.migrated_template("bench_chat", ["ingest"])
        db = await asyncpg.connect(url)
        filled = time.perf_counter()
        await db.execute("SELECT 1")
        for statement in FILL.split(";\n"):
            if statement.strip():
                await _exec(db, statement, args)
        console.log(f"filled in {time.perf_counter() - filled:.1f} s")
        nc = await nats.connect(servers.urls["NATS_URL"])
        await fresh_streams(nc.jetstream())
        proc = start_process(
            engram_cmd("ingest"),
            {
                "NATS_URL": servers.nats_users["ingest"],
                "DATABASE_URL": worker_login(url, "ingest"),
                # The worker runs this tree's code (or the snapshot's), not the installed one.
                "PYTHONPATH": os.environ.get("PYTHONPATH") or str(ROOT),
            },
            servers.logs / "ingest.log",
        )
        try:
            await wait_consumer(nc.jetstream(), "ingest", proc)
            await answering(nc)
            return await measure(nc, db, url, args)
        finally:
            stop_process(proc)
            await nc.close()
            await db.close()


async def _exec(db: asyncpg.Connection, statement: str, given: argparse.Namespace) -> None:
    # Numbers and the fixed id only (no user input): written into the statement.
    sql = (
        statement.replace("$1::uuid", f"'{CID}'::uuid")
        .replace("$2", str(int(given.others)))
        .replace("$3::int", str(int(given.messages)))
    )
    await db.execute(sql)


async def answering(nc: Any, limit_s: float = 60.0) -> None:
    """Until the worker answers queries (it subscribes them once the app has started)."""
    deadline = time.perf_counter() + limit_s
    while True:
        try:
            await nc.request("query.chat.conversations", b"{}", timeout=2)
            return
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            if time.perf_counter() > deadline:
                raise
            await asyncio.sleep(0.1)


async def ask(nc: Any, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    msg = await nc.request(subject, orjson.dumps(body), timeout=10)
    reply: dict[str, Any] = orjson.loads(msg.data)
    assert reply["status"] == "ok", reply
    return reply


async def measure(
    nc: Any, db: asyncpg.Connection, url: str, args: argparse.Namespace
) -> dict[str, Any]:
    base = {"tenant_id": "acme", "conversation_id": CID, "limit": 50}
    cursor = None  # the middle page's cursor, found by paging
    for _ in range(args.messages // 100):
        cursor = (await ask(nc, "query.chat.history", {**base, "cursor": cursor}))["next_cursor"]
    cases = {
        "history_first_page": ("query.chat.history", base),
        "history_deep_page": ("query.chat.history", {**base, "cursor": cursor}),
        "history_versions": (
            "query.chat.history",
            {**base, "include_versions": True, "include_deleted": True},
        ),
        "conversations": (
            "query.chat.conversations",
            {"tenant_id": "acme", "agent_id": "bot", "limit": 20},
        ),
    }
    results: dict[str, Any] = {}
    for name, (subject, body) in cases.items():
        await timed(20, lambda s=subject, b=body: ask(nc, s, b))  # warm-up
        results[name] = summary(await timed(args.requests, lambda s=subject, b=body: ask(nc, s, b)))
    results["handler_in_process"] = await in_process(url, base, args.requests)
    await timed(20, lambda: db.fetch(PLAIN, CID))
    plain = summary(await timed(args.requests, lambda: db.fetch(PLAIN, CID)))
    results["plain_select"] = plain
    results["plans"] = await plans(db)
    for name in [*cases, "handler_in_process"]:
        results[name]["p50_over_plain"] = round(results[name]["p50_ms"] / plain["p50_ms"], 1)
        results[name]["p99_over_plain"] = round(results[name]["p99_ms"] / plain["p99_ms"], 1)
    return results


async def in_process(url: str, base: dict[str, Any], n: int) -> dict[str, float]:
    """The first-page handler called in this process (reader pool, tenant scope, SQL,
    shaping, reply size check; no NATS, no request parsing): splits the query path."""
    from contracts.chat_queries import ChatHistoryRequest
    from services.ingest import queries
    from services.runtime.db import Roles, create_pool

    reads = queries.ChatReads(1)
    reads._pool = await create_pool(  # what ChatReads.start does, without a worker
        worker_login(url, "ingest"),
        role=Roles("ingest").reader,
        keep_session=True,
        server_settings={"plan_cache_mode": "force_custom_plan"},
    )
    request = ChatHistoryRequest.model_validate(base)
    try:
        await timed(20, lambda: queries.history(reads, request, 1 << 20))
        return summary(await timed(n, lambda: queries.history(reads, request, 1 << 20)))
    finally:
        await reads.stop()


async def plans(db: asyncpg.Connection) -> dict[str, list[str]]:
    """The plans of the service's own statements (first page of each), as run."""
    from uuid import UUID

    from services.ingest import repo_read

    await db.execute("SET plan_cache_mode = force_custom_plan")
    cid = UUID(CID)
    statements = {
        "history": (
            repo_read.NEWEST_FIRST,
            ("acme", cid, False, None, repo_read.HIGHEST, 51, 1 << 20),
        ),
        "conversations": (
            repo_read.BY_AGENT,
            ("acme", "bot", None, None, repo_read.HIGHEST, 21, None),
        ),
    }
    found = {}
    for name, (sql, params) in statements.items():
        rows = await db.fetch("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + sql, *params)
        found[name] = [r[0] for r in rows]
    return found


def main() -> None:
    if not os.environ.get(SNAPSHOT_ENV):
        reexec_on_snapshot(__file__, sys.argv[1:])  # does not return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--others", type=int, default=600)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    started = loadavg()
    results = asyncio.run(run(args))
    for name, r in results.items():
        if name != "plans":
            console.print(f"{name:22} {r}")
    for name, lines in results["plans"].items():
        console.print(f"[bold]{name}[/bold]\n" + "\n".join(lines))
    write_report(
        RESULT,
        {
            "code": code_version(ROOT),
            "messages": args.messages,
            "other_conversations": args.others,
            "requests": args.requests,
            "loadavg_before": started,
            "loadavg_after": loadavg(),
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
