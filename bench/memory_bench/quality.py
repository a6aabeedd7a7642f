"""Quality: the merge threshold sweep, scored against the planted paraphrase pairs."""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import nats
import numpy as np

from bench._servers import stop_process
from bench.memory_bench.generate import LEVELS, Memory, memory_set
from bench.memory_bench.settings import GOAL_PRECISION, GOAL_RECALL, QUALITY_MIX, TENANT, console
from bench.memory_bench.stack import (
    Bench,
    consolidate_event,
    db_conn,
    finish_seed,
    publish,
    seed,
    wait_jobs,
)
from bench.memory_bench.vectors import VectorCache

# --- quality -----------------------------------------------------------------------------


def pairs_of(groups: Sequence[Sequence[int]]) -> set[frozenset[int]]:
    return {frozenset((a, b)) for g in groups for i, a in enumerate(g) for b in g[i + 1 :]}


def score(groups: Sequence[Sequence[int]], memories: Sequence[Memory]) -> dict[str, Any]:
    planted = {
        frozenset((i, m.duplicate_of)): m.level
        for i, m in enumerate(memories)
        if m.duplicate_of is not None
    }
    pairs = pairs_of(groups)
    tp = pairs & set(planted)
    by_level = {level: [k for k, v in planted.items() if v == level] for level in LEVELS}
    precision = len(tp) / len(pairs) if pairs else float("nan")
    recall = len(tp) / len(planted)
    return {
        "groups": len(groups),
        "memories_merged": sum(len(g) for g in groups),
        "largest_group": max((len(g) for g in groups), default=0),
        "pairs": len(pairs),
        "true_pairs": len(tp),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if pairs and tp else 0.0,
        "recall_by_level": {
            lv: sum(1 for k in keys if k in tp) / max(1, len(keys)) for lv, keys in by_level.items()
        },
    }


def replay(
    memories: Sequence[Memory],
    vectors: np.ndarray,
    ids: Sequence[uuid.UUID],
    importance_of: dict[uuid.UUID, dict[str, Any]],
    *,
    threshold: float,
) -> list[list[int]] | None:
    """The merge step's groups computed here with services.memory's own functions on the
    same rows (per type, rows by memory_id, the same order of centres, the same user; with
    complete linkage and the facts check when the service has them): what the worker should
    have written. None when the service's merge is not one this knows how to replay."""
    import inspect
    from types import SimpleNamespace

    from services.memory import clusters, steps
    from services.memory.settings import MemorySettings

    order_of = next(
        (
            getattr(steps, n)
            for n in ("_most_important_first", "_newest_first")
            if hasattr(steps, n)
        ),
        None,
    )
    merge_src = inspect.getsource(steps.merge)
    linkage = "complete_linkage" in merge_src
    if order_of is None or (not linkage and "star_clusters" not in merge_src):
        return None
    graph_t = min(threshold, MemorySettings().cluster_threshold)
    out = []
    for memory_type in steps.MERGED_TYPES:
        idx = sorted(
            (i for i, m in enumerate(memories) if m.memory_type == memory_type),
            key=lambda i: ids[i],
        )
        if not idx:
            continue
        # The service's ordering reads fields by name (MemoryRow).
        rows = [SimpleNamespace(**importance_of[ids[i]]) for i in idx]
        users = [memories[i].user_id for i in idx]
        graph = clusters.neighbours(vectors[idx], graph_t)
        if linkage:
            from services.memory.facts import compatible, facts

            stated = [facts(memories[i].text) for i in idx]
            found = clusters.complete_linkage(
                graph,
                vectors[idx],
                order_of(rows),
                threshold,
                joinable=lambda a, b, s=stated, u=users: bool(
                    u[a] == u[b] and compatible(s[a], s[b])
                ),
            )
        else:
            found = clusters.star_clusters(graph, order_of(rows), threshold, same=users)
        out += [[idx[j] for j in members] for members in found]
    return out


async def quality(bench: Bench, cache: VectorCache, args: argparse.Namespace) -> dict[str, Any]:
    from services.memory.settings import MemorySettings

    default_t = MemorySettings().merge_threshold
    n_distinct, n_dup = (360, 40) if args.quick else (1800, 200)
    memories = memory_set(n_distinct, n_dup, QUALITY_MIX, seed=args.seed)
    t0 = time.perf_counter()
    vectors = cache.vectors([m.text for m in memories])
    console.log(
        f"quality set: {len(memories):,} memories ({n_dup} planted paraphrases, "
        f"{len({m.user_id for m in memories if m.user_id})} users, "
        f"{dict(Counter(m.memory_type for m in memories))}); vectors in "
        f"{time.perf_counter() - t0:.1f}s"
    )
    copies: dict[str, float | None] = {f"q-{t:.2f}": t for t in args.thresholds}
    copies["q-default"] = None
    db = await bench.clone()
    conn = await db_conn(bench.url(db))
    ids: dict[str, list[uuid.UUID]] = {}
    for agent in copies:
        ids[agent] = await seed(conn, agent, memories, vectors, seed_=args.seed + 1)
    await finish_seed(conn)
    rows = await conn.fetch(
        "SELECT agent_id, memory_id, importance, access_count, written_at FROM memory.memories"
    )
    facts = {(r["agent_id"], r["memory_id"]): dict(r) for r in rows}
    await bench.fresh_streams()
    log = bench.logs / "quality-memory-worker.log"
    worker = bench.start_worker("memory", db, "quality-memory-worker")
    nc = await nats.connect(bench.nats_url)
    js = nc.jetstream()
    try:
        events = {agent: consolidate_event(agent, ["merge"], t) for agent, t in copies.items()}
        started = time.perf_counter()
        for e in events.values():
            await publish(js, e)
        job_rows = await wait_jobs(
            conn, [e.payload.job_id for e in events.values()], worker, log, within=900
        )
        all_done_s = time.perf_counter() - started
        merged = await conn.fetch(
            """SELECT agent_id, source_ids FROM memory.consolidations
                WHERE tenant_id = $1 AND step = 'merge' ORDER BY consolidation_id""",
            TENANT,
        )
    finally:
        await nc.close()
        stop_process(worker)
        await conn.close()
        await bench.drop(db)
    jobs = {r["agent_id"]: r for r in job_rows}
    index = {(agent, mid): i for agent, agent_ids in ids.items() for i, mid in enumerate(agent_ids)}
    groups: dict[str, list[list[int]]] = defaultdict(list)
    for r in merged:
        groups[r["agent_id"]].append([index[(r["agent_id"], m)] for m in r["source_ids"]])
    sims = vectors @ vectors.T
    sweep = []
    for agent, t in copies.items():
        s = score(groups[agent], memories)
        agent_facts = {mid: facts[(agent, mid)] for mid in ids[agent]}
        expected = replay(memories, vectors, ids[agent], agent_facts, threshold=t or default_t)
        same = (
            None
            if expected is None
            else ({frozenset(g) for g in expected} == {frozenset(g) for g in groups[agent]})
        )
        report = jobs[agent]["report"]
        merge_report = (json.loads(report) if isinstance(report, str) else report)[0]
        sweep.append(
            {
                "agent": agent,
                "threshold": t,
                "default": t is None,
                "effective_threshold": t or default_t,
                **s,
                "job_ms": jobs[agent]["duration_ms"],
                "matches_replay": same,
                "step_report": merge_report,
            }
        )
    default_groups = groups["q-default"]
    examples = _examples(memories, sims, default_groups, default_t)
    level_sims = {
        lv: [float(sims[i, m.duplicate_of]) for i, m in enumerate(memories) if m.level == lv]
        for lv in LEVELS
    }
    return {
        "memories": len(memories),
        "distinct": n_distinct,
        "planted_pairs": n_dup,
        "users": len({m.user_id for m in memories if m.user_id}),
        "types": dict(Counter(m.memory_type for m in memories)),
        "levels": dict(Counter(m.level for m in memories if m.level)),
        "default_threshold": default_t,
        "planted_cosine_percentiles": {
            lv: {str(q): round(float(np.percentile(v, q)), 3) for q in (5, 25, 50, 75)}
            for lv, v in level_sims.items()
        },
        "sweep": sweep,
        "jobs_wall_s": all_done_s,
        "examples": examples,
        "best": _best(sweep),
    }


def _best(sweep: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [r for r in sweep if not r["default"]]
    both = [r for r in rows if r["precision"] >= GOAL_PRECISION and r["recall"] >= GOAL_RECALL]
    precise = [r for r in rows if r["precision"] >= GOAL_PRECISION]
    best_f1 = max(rows, key=lambda r: (r["f1"], r["threshold"]))
    out: dict[str, Any] = {"best_f1": best_f1["threshold"]}
    out["meets_both"] = [r["threshold"] for r in both]
    if precise:
        out["max_recall_at_precision_goal"] = max(
            precise, key=lambda r: (r["recall"], -r["threshold"])
        )["threshold"]
    return out


def _examples(
    memories: Sequence[Memory],
    sims: np.ndarray,
    groups: Sequence[Sequence[int]],
    threshold: float,
    n: int = 6,
) -> dict[str, list[dict[str, Any]]]:
    planted = {
        frozenset((i, m.duplicate_of)) for i, m in enumerate(memories) if m.duplicate_of is not None
    }
    group_of = {i: k for k, g in enumerate(groups) for i in g}
    fps = sorted((p for p in pairs_of(groups) if p not in planted), key=lambda p: -sims[tuple(p)])
    fns = [p for p in planted if p not in pairs_of(groups)]
    rng = random.Random(1)
    fp_pick = fps[: n // 2] + rng.sample(fps[n // 2 :], min(n - n // 2, len(fps[n // 2 :])))
    fn_pick = rng.sample(fns, min(n, len(fns)))

    def show(p: frozenset[int]) -> dict[str, Any]:
        a, b = sorted(p)
        if memories[a].duplicate_of == b:
            a, b = b, a
        reason = ""
        if p in planted:
            if sims[a, b] < threshold:
                reason = "below threshold"
            elif a in group_of or b in group_of:
                reason = "in different groups (star centre elsewhere)"
            else:
                reason = "neither merged"
        return {
            "cosine": round(float(sims[a, b]), 3),
            "type": memories[a].memory_type,
            "level": memories[a].level or memories[b].level,
            "reason": reason,
            "a": memories[a].text,
            "b": memories[b].text,
        }

    return {
        "false_positives": [show(p) for p in fp_pick],
        "false_negatives": [show(p) for p in fn_pick],
    }


# --- scale -------------------------------------------------------------------------------
