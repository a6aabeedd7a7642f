"""Budgeting: what of each source fits, as pure functions of the sources' answers.

1. Deduplicate: a text (whitespace-collapsed, case-folded) or an id found in two sources is
   kept in the first of messages > summary > memories > knowledge (a recent message is
   also a knowledge chunk of itself; a session summary is also a memory).
2. The system text comes first and is cut last: it takes up to the whole budget.
3. The rest is water-filled over the sources by their shares: each gets its share of what
   is left; one that needs less takes what it needs and the others share the remainder
   again, so the budget is used as long as some source has more to give.
4. Each source is cut to its allotment at token boundaries: recent messages keep the
   newest (the text is chronological, its start is cut), memories and knowledge keep the
   best scored (their order; the end is cut).

Every segment's ``tokens`` is the count of its own text, so the total is at most the
budget whatever the tokenizer does at the cuts (the handler checks it again).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from contracts.context import SegmentKind
from services.context.tokens import Tokenizer

SEPARATOR = "\n"
SYSTEM_SEPARATOR = "\n\n"
# Which copy of a duplicate is kept: the first kind in this order that has it.
DEDUPE_ORDER = (
    SegmentKind.messages,
    SegmentKind.summary,
    SegmentKind.memories,
    SegmentKind.knowledge,
)
# Who gets the tokens the shares' rounding leaves: the most wanted first.
PRIORITY = (
    SegmentKind.messages,
    SegmentKind.memories,
    SegmentKind.knowledge,
    SegmentKind.summary,
    SegmentKind.state,
)


@dataclass(frozen=True)
class Item:
    """One thing a source gave: its id, its line in the segment, and what identifies it
    for deduplication (its raw text and the ids it is, or is a part of)."""

    id: str
    line: str
    match: str = ""  # raw text; "" never matches
    keys: tuple[str, ...] = ()
    # When it happened (a message's creation, the end of a summary's session): which
    # summaries are older than the recent messages (sources.older_summaries).
    at: datetime | None = None


@dataclass(frozen=True)
class Source:
    """A source's answer: items best (or newest) first, or why there are none."""

    kind: SegmentKind
    items: tuple[Item, ...] = ()
    missing: str | None = None  # the reason it failed
    newest_first: bool = False  # shown oldest first, cut from the start


@dataclass(frozen=True)
class Packed:
    kind: SegmentKind
    text: str
    tokens: int
    source_ids: list[str]
    status: Literal["ok", "empty", "missing"]
    reason: str | None = None
    truncated: bool = False
    source_tokens: int = 0


@dataclass(frozen=True)
class Plan:
    segments: list[Packed] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return sum(s.tokens for s in self.segments)

    @property
    def source_tokens(self) -> int:
        return sum(s.source_tokens for s in self.segments)


def normalized(text: str) -> str:
    return " ".join(text.split()).casefold()


def dedupe(sources: Sequence[Source]) -> list[Source]:
    """``sources`` with each duplicate kept only in the first kind of ``DEDUPE_ORDER``
    (and the first item within a source)."""
    rank = {kind: i for i, kind in enumerate(DEDUPE_ORDER)}
    seen_text: set[str] = set()
    seen_keys: set[str] = set()
    kept: dict[int, Source] = {}
    order = sorted(range(len(sources)), key=lambda i: rank.get(sources[i].kind, len(rank)))
    for i in order:
        source = sources[i]
        if source.kind not in rank:
            kept[i] = source
            continue
        items = []
        for item in source.items:
            text = normalized(item.match)
            # Ids count against earlier sources only: two chunks of one file share one.
            if (text and text in seen_text) or any(k in seen_keys for k in item.keys):
                continue
            if text:
                seen_text.add(text)
            items.append(item)
        seen_keys.update(k for item in items for k in item.keys)
        kept[i] = replace(source, items=tuple(items))
    return [kept[i] for i in range(len(sources))]


def allocate(
    available: int, wants: Mapping[SegmentKind, int], shares: Mapping[SegmentKind, float]
) -> dict[SegmentKind, int]:
    """Tokens for each kind: at most what it wants, together ``min(available, sum of
    wants)`` (kinds with a share of 0 get nothing)."""
    alloc = {kind: 0 for kind in wants}
    active = [k for k in PRIORITY if wants.get(k, 0) > 0 and shares.get(k, 0) > 0]
    pool = max(available, 0)
    while active and pool > 0:
        weight = sum(shares[k] for k in active)
        portion = {k: pool * shares[k] / weight for k in active}
        satisfied = [k for k in active if wants[k] - alloc[k] <= portion[k]]
        if satisfied:
            for k in satisfied:
                pool -= wants[k] - alloc[k]
                alloc[k] = wants[k]
                active.remove(k)
            continue
        for k in active:
            give = math.floor(portion[k])
            alloc[k] += give
            pool -= give
        for k in active:  # the rounding's leftover, one token each, most wanted first
            if pool <= 0:
                break
            alloc[k] += 1
            pool -= 1
        break
    return alloc


def _offsets(lines: Sequence[str], sep: str) -> list[tuple[int, int]]:
    spans, at = [], 0
    for line in lines:
        spans.append((at, at + len(line)))
        at += len(line) + len(sep)
    return spans


def pack(
    kind: SegmentKind,
    items: Sequence[Item],
    allot: int,
    tok: Tokenizer,
    *,
    newest_first: bool = False,
    sep: str = SEPARATOR,
) -> Packed:
    """The items as one text cut to ``allot`` tokens at token boundaries, with the ids of
    the items it still holds (at least a character of each), in text order."""
    shown = list(reversed(items)) if newest_first else list(items)
    lines = [item.line for item in shown]
    full = sep.join(lines)
    want = tok.count(full)
    if want <= allot:
        text, tokens = full, want
    else:
        text, tokens = tok.tail(full, allot) if newest_first else tok.head(full, allot)
    spans = _offsets(lines, sep)
    if newest_first:
        start = len(full) - len(text)
        ids = [item.id for item, (_, end) in zip(shown, spans, strict=True) if end > start]
    else:
        ids = [item.id for item, (begin, _) in zip(shown, spans, strict=True) if begin < len(text)]
    return Packed(
        kind=kind,
        text=text,
        tokens=tokens,
        source_ids=ids,
        status="ok",
        truncated=tokens < want,
        source_tokens=want,
    )


def plan(
    budget: int,
    system: Sequence[Item],
    sources: Sequence[Source],
    shares: Mapping[SegmentKind, float],
    tok: Tokenizer,
) -> Plan:
    """The segments: the system text (when given), then each source in ``sources``'
    order, sum of tokens at most ``budget``."""
    segments: list[Packed] = []
    used = 0
    if system:
        first = pack(SegmentKind.system, system, budget, tok, sep=SYSTEM_SEPARATOR)
        segments.append(first)
        used = first.tokens
    sources = dedupe(sources)
    wants: dict[SegmentKind, int] = {}
    fulls: dict[SegmentKind, Source] = {}
    for source in sources:
        if source.missing is None and source.items:
            shown = reversed(source.items) if source.newest_first else source.items
            wants[source.kind] = tok.count(SEPARATOR.join(i.line for i in shown))
            fulls[source.kind] = source
    alloc = allocate(budget - used, wants, shares)
    for source in sources:
        if source.missing is not None:
            segments.append(Packed(source.kind, "", 0, [], "missing", reason=source.missing))
        elif not source.items:
            segments.append(Packed(source.kind, "", 0, [], "empty"))
        else:
            segments.append(
                pack(
                    source.kind,
                    source.items,
                    alloc[source.kind],
                    tok,
                    newest_first=source.newest_first,
                )
            )
    return Plan(segments)
