"""One consolidation job while it runs: its row, its connection, and the memory groups
and neighbour graphs its steps share (computed once per job and type). The runner
(``runner.py``) claims jobs and runs their steps (``steps.py``) with one of these."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from contracts.memory_jobs import Step, StepReport
from services.memory import repo_steps
from services.memory.clusters import Graph, neighbours
from services.memory.rows import JobRow, MemoryRow
from services.memory.settings import MemorySettings
from services.runtime.db import Connection


@dataclass(frozen=True)
class Cluster:
    model: str
    rows: list[MemoryRow]
    vectors: NDArray[np.float32]


@dataclass
class Group:
    """Active memories of one type and model, with their neighbour graph. Not frozen: a
    merge marks the memories it supersedes dead and puts the merged one in its lead's
    place, so the next step of the job reuses the graph."""

    rows: list[MemoryRow]
    vectors: NDArray[np.float32]
    graph: Graph
    alive: NDArray[np.bool_]


@dataclass
class JobContext:
    """Mutable per-job caches (``groups``, ``episode_clusters``) around the job's row."""

    conn: Connection
    row: JobRow
    settings: MemorySettings
    groups: dict[tuple[str, str, str], Group] = field(default_factory=dict)
    episode_clusters: list[Cluster] | None = None

    @property
    def tenant(self) -> str:
        return self.row.tenant_id

    @property
    def agent(self) -> str:
        return self.row.agent_id

    @property
    def clock(self) -> datetime:
        return self.row.clock

    @property
    def dry_run(self) -> bool:
        return self.row.dry_run

    @property
    def merge_threshold(self) -> float:
        return float(self.row.merge_threshold or self.settings.merge_threshold)

    def report(self, step: Step, **counts: int) -> StepReport:
        return StepReport(
            step=step,
            **{
                "examined": 0,
                "created": 0,
                "superseded": 0,
                "forgotten": 0,
                "changed": 0,
                "tokens_saved": 0,
                **counts,
            },
        )

    async def load(self, memory_type: str) -> list[tuple[str, Group]]:
        """The (model, group) pairs of a type: one group per model and user (memories about
        different users are never merged or summarized together, so comparing them would
        only fill each memory's neighbour list with memories it cannot join). Graphs
        computed earlier in this job are reused when the active set is what they expect."""
        rows = await repo_steps.load_active(self.conn, self.tenant, self.agent, memory_type)
        by_key: dict[tuple[str, str], list[MemoryRow]] = defaultdict(list)
        for r in rows:
            by_key[(r.model_id, r.user_id or "")].append(r)
        found = []
        for (model, user), group_rows in sorted(by_key.items()):
            cached = self.groups.get((memory_type, model, user))
            ids = {r.memory_id for r in group_rows}
            if cached is None or ids != {
                r.memory_id for r, a in zip(cached.rows, cached.alive, strict=True) if a
            }:
                vectors = np.stack([r.embedding for r in group_rows])
                threshold = min(self.merge_threshold, self.settings.cluster_threshold)
                graph = await asyncio.to_thread(neighbours, vectors, threshold)
                cached = Group(group_rows, vectors, graph, np.ones(len(group_rows), dtype=bool))
                self.groups[(memory_type, model, user)] = cached
            found.append((model, cached))
        return found
