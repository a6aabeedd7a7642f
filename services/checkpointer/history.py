"""Rebuilding any stored version: from the nearest snapshot at or below it (forward
patches) or at or above it (inverse patches; the current state counts as a snapshot),
whichever needs fewer patches; the other is the fallback. Every rebuild is checked
against the version's stored hash.

``rebuild`` serves the writer (restore, prune: the current document may be ahead of the
stored row). Queries use ``rebuilt``: the database function ``checkpoint.read_version``
makes the same choice and sends the base and the patches in one round trip."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from services.checkpointer import repo_read
from services.checkpointer.patch import Document, Op
from services.checkpointer.versions import (
    base_order,
    canonical,
    empty_state,
    loads,
    read_snapshot,
    replay,
    state_hash,
)
from services.runtime.db import Connection

HeadDoc = Callable[[], Awaitable[Document]]


class NotReadable(LookupError):
    """The version does not exist (``not_found``) or retention removed it (``pruned``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class InconsistentHistory(RuntimeError):
    """A rebuilt version does not match its stored hash (never expected)."""


@dataclass(frozen=True)
class StatePoint:
    state_id: int
    head_version: int
    floor_version: int


async def rebuild(
    conn: Connection,
    point: StatePoint,
    target: int,
    head_doc: HeadDoc,
    around: tuple[int | None, int | None] | None = None,
) -> Document:
    """The document at ``target``. ``around``: the nearest checkpoint versions at or below
    and at or above it, when the caller already has them."""
    if target < 0 or target > point.head_version:
        raise NotReadable(
            "not_found", f"version {target} does not exist (current is {point.head_version})"
        )
    if target == point.head_version:
        return await head_doc()
    below, above = around or await repo_read.checkpoint_around(conn, point.state_id, target)
    if point.floor_version == 0:
        below = max(below or 0, 0)  # version 0 is the empty state
    above = point.head_version if above is None else min(above, point.head_version)
    for direction, base in base_order(target, below, above):
        if direction == "forward":
            doc = await _forward(conn, point, base, target)
        else:
            doc = await _backward(conn, point, base, target, head_doc)
        if doc is not None:
            return doc
    raise NotReadable(
        "pruned",
        f"version {target} was removed by retention (oldest kept: {point.floor_version})",
    )


async def _forward(conn: Connection, point: StatePoint, base: int, target: int) -> Document | None:
    rows = await repo_read.base_and_patches(
        conn, point.state_id, base, base + 1, target, inverse=False
    )
    snap = [r for r in rows if r["part"] == 0]
    patches = [r for r in rows if r["part"] == 1]
    if snap:
        doc = read_snapshot(bytes(snap[0]["snapshot"]), snap[0]["compression"])
        expected: bytes | None = bytes(snap[0]["state_hash"])
    elif base == 0:
        doc, expected = empty_state(), None
    else:
        return None
    if len(patches) != target - base:
        return None
    if patches:
        ops: list[list[Op]] = [loads(r["ops"]) for r in patches]
        doc, expected = replay(doc, ops), bytes(patches[-1]["state_hash"])
    return _checked(doc, expected, point, target)


async def _backward(
    conn: Connection, point: StatePoint, base: int, target: int, head_doc: HeadDoc
) -> Document | None:
    from_head = base == point.head_version
    rows = await repo_read.base_and_patches(
        conn, point.state_id, -1 if from_head else base, target, base, inverse=True
    )
    snap = [r for r in rows if r["part"] == 0]
    if from_head:
        doc = await head_doc()
    elif snap:
        doc = read_snapshot(bytes(snap[0]["snapshot"]), snap[0]["compression"])
    else:
        return None
    patches = [r for r in rows if r["part"] == 1]
    expected = (
        bytes(patches[0]["state_hash"]) if patches and patches[0]["version"] == target else None
    )
    needed = [r for r in patches if r["version"] > target]
    if len(needed) != base - target:
        return None
    ops: list[list[Op]] = [loads(r["ops"]) for r in reversed(needed)]
    return _checked(replay(doc, ops), expected, point, target)


def _checked(doc: Document, expected: bytes | None, point: StatePoint, target: int) -> Document:
    if expected is not None and state_hash(canonical(doc)) != expected:
        raise InconsistentHistory(
            f"state {point.state_id}: rebuilt version {target} does not match its stored hash"
        )
    return doc


def rebuilt(row: asyncpg.Record) -> tuple[Document, bytes]:
    """The document and its hash from one ``read_version`` row (its base and the patches
    from there to the target, in order), checked against the target's stored hash."""
    target, head = row["target"], row["version"]
    direction = row["direction"]
    if direction is None:
        if target < 0 or target > head:
            raise NotReadable("not_found", f"version {target} does not exist (current is {head})")
        raise NotReadable(
            "pruned",
            f"version {target} was removed by retention (oldest "
            f"kept: {row['history_floor_version']})",
        )
    if direction == "head":
        # The current row is trusted as stored: its hash was computed from this text.
        return loads(row["head_doc"]), bytes(row["state_hash"])
    if row["head_doc"] is not None:
        doc: Document = loads(row["head_doc"])
    elif row["snapshot"] is not None:
        doc = read_snapshot(bytes(row["snapshot"]), row["compression"])
    else:
        doc = empty_state()
    ops: list[list[Op]] = loads(row["patches"])
    if ops:
        doc = replay(doc, ops)
    digest = state_hash(canonical(doc))
    expected = row["target_hash"]
    if expected is not None and digest != bytes(expected):
        raise InconsistentHistory(
            f"state {row['state_id']}: rebuilt version {target} does not match its stored hash"
        )
    return doc, digest
