"""The tables and goals printed after each part."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from bench.memory_bench.generate import LEVELS
from bench.memory_bench.settings import (
    GOAL_100K_S,
    GOAL_PRECISION,
    GOAL_RECALL,
    GOAL_SEARCH_P99_MS,
    console,
)

# --- report ------------------------------------------------------------------------------


def show_quality(q: dict[str, Any]) -> list[dict[str, Any]]:
    table = Table(
        title=f"Merge quality: {q['memories']:,} memories of one agent, "
        f"{q['planted_pairs']} planted paraphrase pairs ({q['users']} users)"
    )
    for col in (
        "threshold",
        "groups",
        "merged",
        "pairs",
        "true",
        "precision",
        "recall",
        "F1",
        "recall synonyms / restructured / reworded",
        "job ms",
        "= replay",
    ):
        table.add_column(col, justify="right")
    goals = []
    for r in q["sweep"]:
        t = f"{r['effective_threshold']:.2f}" + (" (default)" if r["default"] else "")
        ok_p = r["precision"] >= GOAL_PRECISION
        ok_r = r["recall"] >= GOAL_RECALL
        levels = " / ".join(f"{r['recall_by_level'][lv]:.2f}" for lv in LEVELS)
        table.add_row(
            t,
            str(r["groups"]),
            str(r["memories_merged"]),
            str(r["pairs"]),
            str(r["true_pairs"]),
            f"[{'green' if ok_p else 'red'}]{r['precision']:.3f}",
            f"[{'green' if ok_r else 'red'}]{r['recall']:.3f}",
            f"{r['f1']:.3f}",
            levels,
            str(r["job_ms"]),
            {True: "yes", False: "[red]NO", None: "n/a"}[r["matches_replay"]],
            style="bold" if r["default"] else None,
        )
        if r["default"]:
            goals += [
                {
                    "goal": f"merge precision >= {GOAL_PRECISION} at the default threshold "
                    f"({r['effective_threshold']})",
                    "value": round(r["precision"], 3),
                    "pass": ok_p,
                },
                {
                    "goal": f"merge recall >= {GOAL_RECALL} at the default threshold "
                    f"({r['effective_threshold']})",
                    "value": round(r["recall"], 3),
                    "pass": ok_r,
                },
            ]
    console.print(table)
    console.print(
        "cosine of planted pairs by level (percentiles 5/25/50/75): "
        + "; ".join(
            f"{lv} {'/'.join(str(v) for v in p.values())}"
            for lv, p in q["planted_cosine_percentiles"].items()
        )
    )
    b = q["best"]
    console.print(
        f"thresholds meeting both goals: {b['meets_both'] or 'none'}; best F1 at "
        f"{b['best_f1']}; highest recall with precision >= {GOAL_PRECISION}: "
        f"{b.get('max_recall_at_precision_goal', 'none')}"
    )
    for kind in ("false_positives", "false_negatives"):
        console.print(f"[bold]{kind.replace('_', ' ')} at the default threshold:")
        for e in q["examples"][kind]:
            why = f", {e['reason']}" if e["reason"] else ""
            level = f", {e['level']}" if e["level"] and e["reason"] else ""
            console.print(
                f"  cos {e['cosine']} ({e['type']}{level}{why})\n    {e['a']}\n    {e['b']}",
                highlight=False,
            )
    return goals


def show_scale(s: dict[str, Any]) -> list[dict[str, Any]]:
    table = Table(title="Consolidation of one agent, every step (medians of runs)")
    for col in (
        "memories",
        "runs",
        "publish -> done",
        "floor: neighbours alone",
        "ratio",
        "expire",
        "merge",
        "abstract",
        "summarize",
        "decay",
        "active after",
        "peak RSS",
    ):
        table.add_column(col, justify="right")
    goals = []
    for size, r in s.items():
        m = r["median"]
        steps = m["step_seconds"]
        last = r["runs"][-1]
        table.add_row(
            f"{int(size):,}",
            str(len(r["runs"])),
            f"{m['seconds']:.1f} s",
            f"{m['floor_s']:.1f} s",
            f"{m['ratio']:.1f}x",
            *(
                f"{steps.get(k, 0):.1f}"
                for k in ("expire", "merge", "abstract", "summarize", "decay")
            ),
            f"{last['active_after']:,}",
            f"{last['worker_peak_rss_mb']} MB",
        )
        if int(size) >= 100_000:
            goals.append(
                {
                    "goal": f"{int(size):,} memories consolidated in < {GOAL_100K_S:.0f} s",
                    "value": round(m["seconds"], 1),
                    "pass": m["seconds"] < GOAL_100K_S,
                }
            )
    console.print(table)
    for size, r in s.items():
        for step in r["runs"][-1]["steps"]:
            console.print(
                f"  {int(size):,} {step['step']}: "
                + ", ".join(f"{k} {v}" for k, v in step.items() if k != "step" and v),
                highlight=False,
            )
    return goals


def show_search(s: dict[str, Any]) -> list[dict[str, Any]]:
    m = s["median"]
    table = Table(
        title=f"Search at {s['memories']:,} memories of one agent, {s['queries']} "
        f"queries in sequence (medians of {len(s['runs'])} runs)"
    )
    for col in ("", "p50 ms", "p99 ms"):
        table.add_column(col, justify="right")
    table.add_row(
        "query.memory.search over NATS (embed + SQL + rank)",
        f"{m['search_p50_ms']:.1f}",
        f"{m['search_p99_ms']:.1f}",
    )
    table.add_row(
        "  floor: query.embed alone over NATS",
        f"{m['embed_p50_ms']:.1f}",
        f"{m['embed_p99_ms']:.1f}",
    )
    table.add_row(
        "  floor: search_sql alone (one statement, HNSW)",
        f"{m['sql_p50_ms']:.1f}",
        f"{m['sql_p99_ms']:.1f}",
    )
    console.print(table)
    p99 = m["search_p99_ms"]
    return [
        {
            "goal": f"query.memory.search p99 <= {GOAL_SEARCH_P99_MS:.0f} ms at "
            f"{s['memories']:,} memories",
            "value": round(p99, 1),
            "pass": p99 <= GOAL_SEARCH_P99_MS,
        }
    ]
