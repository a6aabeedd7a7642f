#!/usr/bin/env python
"""Memory benchmark: consolidation quality (merge precision/recall over a threshold sweep),
consolidation time at 10k and 100k memories, and query.memory.search latency at 100k.

    .venv/bin/python bench/memory.py --quick            # sanity run, small sizes, ~3 min
    .venv/bin/python bench/memory.py --quality          # the threshold sweep only, ~3 min
    .venv/bin/python bench/memory.py --scale --search   # 10k and 100k consolidation, search
    .venv/bin/python bench/memory.py                    # all three

Starts the embedded nats-server and PostgreSQL itself (DevStack, in a temporary folder
unless --data-dir) and runs the real workers as processes (`engram run memory`,
`engram run embedder`) on a database cloned from a migrated template. Memories come from a
seeded generator (realistic agent memories of the four types, plus planted paraphrase
duplicates: see ``memory_set``), embedded once with all-MiniLM-L6-v2 in this process and
cached by text hash under bench/.cache/; rows are seeded with COPY as the superuser.

  quality  2,000 memories of one agent (1,800 distinct, 200 paraphrases of 200 of them);
           one copy per threshold (each under its own agent), one memory.consolidate job
           (steps ["merge"], payload.merge_threshold) per copy, plus one copy with the
           service's default threshold. Pairwise precision / recall of the merge groups
           (memory.consolidations) against the planted pairs, per paraphrase level.
  scale    N memories of one agent (drawn as 70% episodic, 20% semantic, 8% procedural, 2%
           working; at 100k the generator gives 77 / 17.5 / 3 / 2, general procedures running
           out of distinct slot values; 10% planted paraphrases); memory.consolidate with
           every step; publish ->
           job done, per-step times and reports; beside it the floor: the exact neighbour
           computation alone (services.memory.clusters.neighbours) in this process.
  search   query.memory.search p50/p99 at the largest size over NATS (sequential, after a
           warm-up); beside it query.embed alone and search_sql alone (one statement).

Writes bench/results/memory.json, or memory-<part>.json for one part alone (under /tmp,
-quick.json, with --quick).
"""

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH, so a snapshot there wins
warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench._code import SNAPSHOT_ENV, code_version, imported_code, reexec_on_snapshot  # noqa: E402
from bench._figures import loadavg, write_report  # noqa: E402
from bench._servers import admin_url, embedded_servers  # noqa: E402
from bench.memory_bench.quality import quality  # noqa: E402
from bench.memory_bench.report import show_quality, show_scale, show_search  # noqa: E402
from bench.memory_bench.scale import ScaleData, scale, scale_data  # noqa: E402
from bench.memory_bench.search import search  # noqa: E402
from bench.memory_bench.settings import MODEL_ALIAS, MODEL_ID, THRESHOLDS, console  # noqa: E402
from bench.memory_bench.stack import Bench  # noqa: E402
from bench.memory_bench.vectors import VectorCache  # noqa: E402


async def run(args: argparse.Namespace, bench: Bench, report: dict[str, Any]) -> None:
    """Fills ``report`` (saved after each part, so a later failure keeps the earlier ones)."""
    cache = VectorCache()
    await bench.make_template()
    if args.quality:
        t = time.perf_counter()
        report["quality"] = await quality(bench, cache, args)
        report["quality"]["wall_s"] = round(time.perf_counter() - t, 1)
        report["goals"] += show_quality(report["quality"])
        _save(args, report)  # the sweep first: it is what the threshold choice needs
    datas: dict[int, ScaleData] = {}
    if args.scale:
        t = time.perf_counter()
        report["scale"], datas = await scale(bench, cache, args, args.sizes)
        report["scale_wall_s"] = round(time.perf_counter() - t, 1)
        report["goals"] += show_scale(report["scale"])
        _save(args, report)
    if args.search:
        t = time.perf_counter()
        size = max(args.sizes)
        data = datas.get(size) or await scale_data(bench, cache, size, args.seed + size)
        report["search"] = await search(bench, args, data)
        report["search"]["wall_s"] = round(time.perf_counter() - t, 1)
        report["goals"] += show_search(report["search"])
    report["vectors"] = {
        "how": "SentenceTransformer.encode(batch_size=64, normalize_embeddings=True) of "
        f"all-MiniLM-L6-v2 ({MODEL_ALIAS} package) in the bench process, CPU; cached "
        "by SHA-256 of the text in bench/.cache/memory-vectors/",
        "model_id": MODEL_ID,
        "encoded_this_run": cache.encoded,
        "encode_s_this_run": round(cache.encode_s, 1),
    }


def _save(args: argparse.Namespace, report: dict[str, Any]) -> None:
    report["machine"]["loadavg_now"] = loadavg()
    write_report(args.out, report)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quality", action="store_true", help="the merge threshold sweep")
    parser.add_argument("--scale", action="store_true", help="consolidation time at --sizes")
    parser.add_argument(
        "--search", action="store_true", help="query.memory.search latency at the largest size"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes for a sanity run (400 / 2,000 memories, 1 run)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--runs-100k", type=int, default=None, help="runs for sizes over 20k (default: --runs)"
    )
    parser.add_argument(
        "--sizes",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[10_000, 100_000],
        help="comma-separated (default 10000,100000)",
    )
    parser.add_argument(
        "--thresholds",
        type=lambda v: [float(x) for x in v.split(",")],
        default=list(THRESHOLDS),
        help="merge thresholds of the sweep",
    )
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--live-code",
        action="store_true",
        help="run the working tree's code as it changes, not a snapshot",
    )
    args = parser.parse_args(argv)
    parts = [name for name in ("quality", "scale", "search") if getattr(args, name)]
    if not parts:
        args.quality = args.scale = args.search = True
    if args.quick:
        args.runs = 1
        args.sizes = [2_000]
        args.queries = min(args.queries, 60)
        args.thresholds = [0.80, 0.86, 0.92]
    if args.out is None:
        # One part alone does not overwrite the full run's file (memory-search.json...).
        name = "memory" if len(parts) != 1 else f"memory-{parts[0]}"
        args.out = (
            Path(tempfile.gettempdir()) / f"{name}-quick.json"
            if args.quick
            else ROOT / "bench" / "results" / f"{name}.json"
        )
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not args.live_code and SNAPSHOT_ENV not in os.environ:
        reexec_on_snapshot(__file__, argv)  # does not return
    snapshot = os.environ.get(SNAPSHOT_ENV)
    where = imported_code(console)
    if where is None:
        return 2
    code = code_version(where)
    console.log(
        f"measuring {'a snapshot of ' if snapshot else ''}the code at {where} (commit "
        f"{code.get('commit', '')[:10]}"
        f"{', with uncommitted changes' if code.get('uncommitted_changes') else ''}, "
        f"tree {code['tree_sha']})"
    )
    started = time.perf_counter()
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "code": code,
        "goals": [],
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_at_start": loadavg(),
        },
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    try:
        with embedded_servers(args.data_dir, "engram-bench-memory-", console) as servers:
            bench = Bench(
                admin_url(servers.urls["DATABASE_URL"]),
                servers.urls["NATS_URL"],
                servers.logs,
                servers.pids,
                servers.nats_users,
            )
            asyncio.run(run(args, bench, report))
    except KeyboardInterrupt:
        console.log("interrupted")
        return 130
    report["wall_s"] = round(time.perf_counter() - started, 1)
    for g in report["goals"]:
        console.print(f"{'[green]PASS' if g['pass'] else '[red]FAIL'}[/] {g['goal']}: {g['value']}")
    _save(args, report)
    console.log(f"wrote {args.out} ({report['wall_s']:.0f}s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
