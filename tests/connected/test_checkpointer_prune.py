"""Retention keeps every retained version exact: random patch sequences (hypothesis) go
through the real writer and database, are aged and pruned (twice), and every version is
rebuilt by the query path and compared with a replayed reference."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.state_queries import StateGetRequest
from services.checkpointer.patch import apply_patch
from services.checkpointer.patch_diff import merge_to_ops
from services.checkpointer.prune import prune
from services.checkpointer.queries import get_state
from services.checkpointer.settings import CheckpointerSettings
from services.checkpointer.versions import canonical, empty_state
from services.checkpointer.writer import Delivered, StateWriter
from services.runtime.db import Roles, create_pool
from services.runtime.outbox import Outbox
from services.runtime.replies import QueryFailed
from tests.conftest import Env
from tests.connected.checkpointer_fixtures import TENANT, checkpoint, patch, restore

ROLES = Roles("checkpointer")  # the writer's rows of every tenant, as a test sets them up

T0 = datetime(2026, 1, 1, tzinfo=UTC)
leaf = (
    st.integers(-5, 5)
    | st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=3)
    | st.none()
)


@st.composite
def step(draw: st.DrawFn) -> tuple[str, Any]:
    kind = draw(st.sampled_from(["patch", "patch", "patch", "merge", "checkpoint", "restore"]))
    part = draw(st.sampled_from(["local", "shared", "session", "persistent"]))
    key = draw(st.sampled_from(["a", "b", "c"]))
    if kind == "patch":
        return kind, [{"op": "add", "path": f"/{part}/{key}", "value": draw(leaf)}]
    if kind == "merge":
        return kind, {part: {key: draw(leaf | st.just({"n": 1}))}}
    if kind == "checkpoint":
        return kind, draw(st.sampled_from(["temporary", "permanent", "expired"]))
    return kind, draw(st.integers(0, 10_000))


async def scenario(
    env: Env, steps: list[tuple[str, Any]], *, every: int, batch: int, keep_a: int, keep_b: int
) -> None:
    user = f"u-{uuid4().hex[:8]}"
    writer = StateWriter(
        CheckpointerSettings(snapshot_every=every, compress_above=64), Outbox("checkpoint")
    )
    reference = [canonical(empty_state())]
    kept_by_checkpoint: set[int] = set()
    doc: dict[str, Any] = empty_state()
    events = []
    for kind, arg in steps:
        if kind == "patch":
            events.append(patch(arg, user=user))
        elif kind == "merge":
            events.append(patch(merge=arg, user=user))
        elif kind == "checkpoint":
            if len(reference) == 1:
                continue  # no state yet: the checkpointer rejects it (test_query_errors)
            expired = {"expires_at": T0} if arg == "expired" else {}
            events.append(
                checkpoint(
                    uuid4(), user=user, retention=arg.replace("expired", "temporary"), **expired
                )
            )
            if arg == "permanent":
                kept_by_checkpoint.add(len(reference) - 1)
            continue
        else:
            if len(reference) == 1:
                continue  # no state yet: nothing to restore (rejected by the service)
            target = arg % len(reference)
            events.append(restore(version=target, user=user))
            doc = orjson.loads(reference[target])
            reference.append(reference[target])
            continue
        doc, _ = apply_patch(doc, arg if kind == "patch" else merge_to_ops(doc, arg))
        reference.append(canonical(doc))
    if not events:
        return
    pool = await create_pool(env.database_url, role=ROLES.all_tenants)
    try:
        for start in range(0, len(events), batch):
            async with pool.acquire() as conn, conn.transaction():
                await writer.apply_state(
                    conn,
                    [Delivered(e, i) for i, e in enumerate(events[start : start + batch], start)],
                )
        head = len(reference) - 1
        async with pool.acquire() as conn:
            await conn.execute(
                """UPDATE checkpoint.transitions t
                      SET applied_at = $2::timestamptz + t.version * interval '1 minute'
                     FROM checkpoint.agent_states s
                   WHERE s.state_id = t.state_id AND s.user_id = $1""",
                user,
                T0,
            )
        floor, now = 0, T0 + timedelta(minutes=head + 1)
        for keep in (keep_a, min(keep_a, keep_b)):  # the second run removes more, or nothing
            await prune(pool, keep / 1440, roles=ROLES, now=now, compress_above=64)
            cutoff = now - timedelta(minutes=keep)
            floor = max(floor, min(head, int((cutoff - T0).total_seconds() // 60)))
            await check_versions(
                pool, user, reference, floor=floor, kept=kept_by_checkpoint, cutoff=cutoff
            )
            await check_removed(pool, user, floor, head)
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM checkpoint.agent_states WHERE user_id = $1", user)
    finally:
        await pool.close()


async def check_removed(pool: asyncpg.Pool, user: str, floor: int, head: int) -> None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT (SELECT min(t.version) FROM checkpoint.transitions t
                        WHERE t.state_id = s.state_id) AS oldest,
                      (SELECT count(*) FROM checkpoint.checkpoints c
                        WHERE c.state_id = s.state_id AND c.retention = 'temporary'
                          AND c.version < $2) AS stale,
                      s.history_floor_version
                 FROM checkpoint.agent_states s WHERE s.user_id = $1""",
            user,
            floor,
        )
    assert row["history_floor_version"] == floor
    assert row["oldest"] is None or row["oldest"] > floor or floor == 0
    assert row["stale"] == 0


async def check_versions(
    pool: asyncpg.Pool,
    user: str,
    reference: list[bytes],
    *,
    floor: int,
    kept: set[int],
    cutoff: datetime,
) -> None:
    async def get(**at: Any) -> Any:
        try:
            return await get_state(
                pool, StateGetRequest(tenant_id=TENANT, user_id=user, agent_id="bot", **at), 1 << 30
            )
        except QueryFailed as failed:
            return failed.error

    if len(reference) == 1:  # nothing was ever applied: there is no state
        assert (await get()).code == "not_found"
        return
    for version, expected in enumerate(reference):
        reply = await get(at_version=version)
        if version >= floor or version in kept:
            assert reply.status == "ok", (version, floor, reply)
            got = reply.state.model_dump(include={"local", "shared", "session", "persistent"})
            assert canonical(got) == expected, (version, floor)
        else:
            assert reply.status == "error" and reply.code == "pruned", (version, floor)
    # Time travel inside the retained window lands on the version current then.
    for minute in range(0, len(reference) + 1, 3):
        at = cutoff + timedelta(minutes=minute)
        reply = await get(at_time=at)
        assert reply.status == "ok", reply
        version = min(len(reference) - 1, max(floor, int((at - T0).total_seconds() // 60)))
        assert reply.state.version == version


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(step(), min_size=1, max_size=30),
    every=st.integers(2, 6),
    batch=st.integers(1, 8),
    keep_a=st.integers(0, 35),
    keep_b=st.integers(0, 35),
)
def test_prune_keeps_every_retained_version_exact(
    env: Env,
    *,
    steps: list[tuple[str, Any]],
    every: int,
    batch: int,
    keep_a: int,
    keep_b: int,
) -> None:
    asyncio.run(scenario(env, steps, every=every, batch=batch, keep_a=keep_a, keep_b=keep_b))
