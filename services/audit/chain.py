"""Walking a chain: the checks `engram audit verify` makes, on rows from anywhere.

Rows of one tenant arrive in position order. For each row the walker checks, in order:

1. its position is the next one (a gap: rows were deleted; a repeat: a row was copied
   or the chain forked);
2. its prev_hash is the hash of the row before (a row moved, or one before it changed);
3. the hash recomputed from what is stored equals the stored hash (the row was altered).

The first failure is the chain's break: its row, what was expected and what was found.
At the end the last row must be the chain's recorded head (else its tail was cut).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.audit import canonical as c
from services.audit.record import AUDIT_STREAM, RETAINED, AuditRecord, chain_hash


@dataclass(frozen=True, slots=True)
class StoredRow:
    record: AuditRecord  # digests recomputed from what is stored
    position: int
    recorded_at: datetime
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True)
class Break:
    tenant: str
    position: int  # where the chain stops being valid
    problem: str
    expected: str
    found: str
    row: dict[str, Any] | None = None  # which stored row, when one is involved

    def describe(self) -> str:
        where = f"tenant {self.tenant!r}, position {self.position}"
        if self.row:
            where += " (" + ", ".join(f"{k} {v}" for k, v in self.row.items()) + ")"
        return f"{where}: {self.problem}; expected {self.expected}, found {self.found}"


@dataclass(frozen=True)
class Anchor:
    """Where a walk starts: position 0 and the zero hash, or the end of a retained range."""

    position: int = 0
    hash: bytes = c.ZERO_HASH
    trusted: bool = False  # --since: the first row's own link is taken as the start


def describe_row(row: StoredRow) -> dict[str, Any]:
    r = row.record
    return {
        "record_id": str(r.record_id),
        "event_id": r.source_event_id,
        "stream": r.stream,
        "seq": r.stream_seq,
        "subject": r.subject,
        "recorded_at": c.timestamp(row.recorded_at),
    }


@dataclass
class ChainWalker:
    tenant: str
    anchor: Anchor = field(default_factory=Anchor)
    # An export's own head (or one kept from an earlier export): the chain must reach it.
    expect_head: tuple[int, bytes] | None = None
    position: int = 0
    hash: bytes = c.ZERO_HASH
    rows: int = 0
    broken: Break | None = None
    anchor_confirmed: bool = False

    def __post_init__(self) -> None:
        self.position, self.hash = self.anchor.position, self.anchor.hash
        self.anchor_confirmed = self.anchor.position == 0 or self.anchor.trusted

    def feed(self, row: StoredRow) -> Break | None:
        """Check one row; returns the chain's break the first time there is one."""
        if self.broken is not None:
            return None
        if self.anchor.trusted and self.rows == 0:
            self.position, self.hash = row.position - 1, row.prev_hash
        self.rows += 1
        expected = self.position + 1
        if row.position != expected:
            problem = "missing rows" if row.position > expected else "position repeated"
            return self._break(
                expected, problem, f"position {expected}", f"position {row.position}", row
            )
        if row.prev_hash != self.hash:
            return self._break(
                expected,
                "broken link (prev_hash is not the previous row's "
                "hash: a row was moved, or the one before it replaced)",
                self.hash.hex(),
                row.prev_hash.hex(),
                row,
            )
        computed = chain_hash(
            row.record.record_text, row.position, c.to_micros(row.recorded_at), row.prev_hash
        )
        if computed != row.hash:
            return self._break(
                expected,
                "row altered (its hash does not match its content)",
                computed.hex(),
                row.hash.hex(),
                row,
            )
        head = self.expect_head
        if head and row.position == head[0] and row.hash != head[1]:
            return self._break(
                expected,
                "differs from the exported head",
                head[1].hex(),
                row.hash.hex(),
                row,
            )
        if not self.anchor_confirmed and _confirms(row, self.anchor):
            self.anchor_confirmed = True
        self.position, self.hash = row.position, row.hash
        return None

    def finish(
        self, head: tuple[int, bytes] | None, *, head_label: str = "chain head"
    ) -> Break | None:
        """After the last row: the chain must end at ``head`` (and reach expect_head)."""
        if self.broken is not None:
            return self.broken
        if not self.anchor_confirmed:
            return self._break(
                self.anchor.position,
                "start not confirmed (no retention record in the chain names it)",
                f"a retention record ending at {self.anchor.position}",
                "none",
                None,
            )
        for label, target in ((head_label, head), ("exported head", self.expect_head)):
            if target is None:
                continue
            position, digest = target
            if self.position < position:
                return self._break(
                    self.position + 1,
                    f"tail cut (the {label} is further)",
                    f"rows up to position {position} (hash {digest.hex()})",
                    f"the chain ends at position {self.position}",
                    None,
                )
            if label == head_label and (self.position, self.hash) != (position, digest):
                return self._break(
                    self.position,
                    f"the {label} is not the last row",
                    f"head at position {position} (hash {digest.hex()})",
                    f"last row at position {self.position} (hash {self.hash.hex()})",
                    None,
                )
        return None

    def _break(
        self, position: int, problem: str, expected: str, found: str, row: StoredRow | None
    ) -> Break:
        self.broken = Break(
            self.tenant, position, problem, expected, found, describe_row(row) if row else None
        )
        return self.broken


def _confirms(row: StoredRow, anchor: Anchor) -> bool:
    r = row.record
    if r.stream != AUDIT_STREAM or r.subject != RETAINED or r.payload_text is None:
        return False
    summary = c.loads(r.payload_text)
    return isinstance(summary, dict) and bool(
        summary.get("last_position") == anchor.position
        and summary.get("last_hash") == anchor.hash.hex()
    )


def anchor_from(summaries: list[dict[str, Any]]) -> Anchor:
    """The furthest retained range of a chain (retention records' payloads)."""
    if not summaries:
        return Anchor()
    last = max(summaries, key=lambda s: int(s["last_position"]))
    return Anchor(int(last["last_position"]), bytes.fromhex(last["last_hash"]))
