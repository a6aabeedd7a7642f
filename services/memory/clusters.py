"""Which memories belong together: exact cosine neighbours and greedy star clusters.

Neighbours are exact (blocked matrix products of unit vectors, BLAS in a thread), not
approximate: a consolidation must find every duplicate pair, and 100k vectors of 384
dimensions take about a minute on two cores (bench/memory.py). Each memory keeps at most
``max_neighbours`` neighbours above the threshold, the strongest, so memory stays bounded
however alike the memories are.

Clusters are stars, not connected components: a centre and the memories close to *it*.
Components chain (A~B, B~C, A and C unrelated) and would merge memories that are not
duplicates of each other; stars keep every member within the threshold of the one memory
that stands for the cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

BLOCK_ROWS = 256  # 256 x 100k float32 similarities = 100 MB at a time


@dataclass(frozen=True)
class Graph:
    """For each memory i: its neighbours ``nbr[i]`` with similarities ``sim[i]``,
    strongest first."""

    nbr: list[NDArray[np.int64]]
    sim: list[NDArray[np.float32]]

    def __len__(self) -> int:
        return len(self.nbr)


def neighbours(vectors: NDArray[np.float32], threshold: float, max_neighbours: int = 64) -> Graph:
    n = len(vectors)
    nbr: list[NDArray[np.int64]] = []
    sim: list[NDArray[np.float32]] = []
    for start in range(0, n, BLOCK_ROWS):
        block = vectors[start : start + BLOCK_ROWS] @ vectors.T
        for row, i in enumerate(range(start, min(start + BLOCK_ROWS, n))):
            sims = block[row]
            sims[i] = -1.0  # not its own neighbour
            found = np.flatnonzero(sims >= threshold)
            if len(found) > max_neighbours:
                found = found[np.argpartition(-sims[found], max_neighbours)[:max_neighbours]]
            order = np.argsort(-sims[found], kind="stable")
            nbr.append(found[order].astype(np.int64))
            sim.append(sims[found[order]].astype(np.float32))
    return Graph(nbr, sim)


def star_clusters(
    graph: Graph,
    order: Sequence[int],
    threshold: float,
    *,
    alive: NDArray[np.bool_] | None = None,
    same: Sequence[object] | None = None,
    min_size: int = 2,
) -> list[list[int]]:
    """Greedy stars: take memories in ``order``; an unassigned one becomes a centre and
    takes its unassigned neighbours at ``threshold`` or more (``same[i] == same[j]``
    too, when given: e.g. the same user). Returns clusters of ``min_size`` or more,
    centre first."""
    n = len(graph)
    taken = np.zeros(n, dtype=bool) if alive is None else ~alive
    clusters: list[list[int]] = []
    for centre in order:
        if taken[centre]:
            continue
        members = [centre]
        for j, s in zip(graph.nbr[centre], graph.sim[centre], strict=True):
            if s < threshold:
                break  # strongest first
            if not taken[j] and (same is None or same[j] == same[centre]):
                members.append(int(j))
        if len(members) < min_size:
            continue
        taken[members] = True
        clusters.append(members)
    return clusters


def complete_linkage(
    graph: Graph,
    vectors: NDArray[np.float32],
    rank: Sequence[int],
    threshold: float,
    *,
    joinable: Callable[[int, int], bool],
    alive: NDArray[np.bool_] | None = None,
) -> list[list[int]]:
    """Groups in which every two members are at ``threshold`` or more and ``joinable``
    (e.g. the same user, the same facts): the strongest pairs first, two groups joining only
    when all their cross pairs qualify. Stricter than stars for duplicates, where one
    wrong member is a wrong merge. Returns groups of two or more, best ``rank`` first."""
    live = np.ones(len(graph), dtype=bool) if alive is None else alive
    edges = sorted(
        {
            (-float(s), min(i, int(j)), max(i, int(j)))
            for i in range(len(graph))
            if live[i]
            for j, s in zip(graph.nbr[i], graph.sim[i], strict=True)
            if s >= threshold and live[j]
        }
    )
    group_of = list(range(len(graph)))
    members: dict[int, list[int]] = {}
    for _, i, j in edges:
        a, b = group_of[i], group_of[j]
        if a == b:
            continue
        left, right = members.get(a, [i]), members.get(b, [j])
        if float((vectors[left] @ vectors[right].T).min()) < threshold:
            continue
        if not all(joinable(x, y) for x in left for y in right):
            continue
        members[a] = left + right
        members.pop(b, None)
        for y in right:
            group_of[y] = a
    position = {m: p for p, m in enumerate(rank)}
    return [sorted(g, key=position.__getitem__) for g in members.values()]


def by_degree(graph: Graph, threshold: float, alive: NDArray[np.bool_] | None = None) -> list[int]:
    """Memories with the most neighbours at ``threshold`` first: cluster centres."""
    live = np.ones(len(graph), dtype=bool) if alive is None else alive
    degree = np.array(
        [
            int(np.count_nonzero((s >= threshold) & live[n]))
            for n, s in zip(graph.nbr, graph.sim, strict=True)
        ],
        dtype=np.int64,
    )
    degree[~live] = -1
    return [int(i) for i in np.argsort(-degree, kind="stable")]


def unit_mean(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    mean: NDArray[np.float32] = vectors.mean(axis=0, dtype=np.float32)
    norm = float(np.linalg.norm(mean))
    return mean / np.float32(norm) if norm else mean
