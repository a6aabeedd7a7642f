"""The screen of `engram dev`: what just happened, in words, on one terminal page.

Top to bottom: what each worker did lately, the newest dead letters with their reasons,
then what each service shows of its data (its spec's ``dev_view``: stored messages,
memories, state versions...). The page is cut to the terminal's height: each section
gets one line for its title, and the rows left are dealt out to the sections in turn,
so every section shows its newest rows on a 100x40 terminal. Internal tables (inboxes,
outboxes, queues, consumers) only with ``--verbose``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from services.runtime.bus import DLQ
from services.runtime.dlq import HEADER_KIND, HEADER_REASON, HEADER_SUBJECT
from services.runtime.spec import ServiceSpec
from services.runtime.worker import Worker

FETCH_ROWS = 10  # per section; the page shows fewer when the terminal is short
MAX_COLUMN = 50
SHORT_COLUMN = 10


@dataclass(frozen=True)
class Section:
    """One titled table of the page: ``rows`` newest first, cells as text."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]
    empty: str = "none yet"


@dataclass
class Activity:
    """When each worker's counters last moved, to say "2 s ago"."""

    seen: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    moved_at: dict[str, float] = field(default_factory=dict)

    def line(self, name: str, worker: Worker, now: float) -> Text:
        s = worker.stats
        counters = (s.applied, s.dead, s.retried)
        if counters != self.seen.get(name, (0, 0, 0)):
            self.seen[name] = counters
            self.moved_at[name] = now
        line = Text(f"{name:<13}", no_wrap=True, overflow="ellipsis")
        line.append_text(_state(worker))
        words = f"  {s.applied} event{'' if s.applied == 1 else 's'} applied"
        if s.duplicates:
            words += f", {s.duplicates} duplicates skipped"
        if s.retried:
            words += f", {s.retried} retried"
        line.append(words)
        if s.dead:
            line.append(f", {s.dead} dead-lettered", style="red")
        if name in self.moved_at:
            line.append(f"  (last {ago(now - self.moved_at[name])})", style="dim")
        return line


def _state(worker: Worker) -> Text:
    if worker.supervisor.failure is not None:
        return Text(f"cannot work: {worker.supervisor.failure}", style="bold red")
    if worker.stats.database_unreachable_since is not None:
        return Text("waiting for the database", style="yellow")
    return Text("working", style="green")


def ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def cell(value: object, now: datetime) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=UTC)
        return ago((now - when).total_seconds())
    return " ".join(str(value).split())  # one line: a message's newlines would break rows


async def service_sections(
    database_url: str, specs: Sequence[ServiceSpec], limit: int = FETCH_ROWS
) -> list[Section]:
    """Each service's ``dev_view``, newest rows first."""
    sections = []
    now = datetime.now(UTC)
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        for spec in specs:
            view = spec.dev_view
            if view is None:
                continue
            rows = [tuple(cell(v, now) for v in row) for row in await conn.fetch(view.sql, limit)]
            sections.append(Section(f"{view.title} ({spec.name})", view.columns, rows))
    finally:
        await conn.close()
    return sections


async def dead_letter_section(js: JetStreamContext, limit: int = FETCH_ROWS) -> Section:
    """The newest dead letters, read back from the DLQ stream with their reasons."""
    rows: list[tuple[str, ...]] = []
    try:
        info = await js.stream_info(DLQ.name)
    except NotFoundError:
        info = None
    if info is not None and info.state.messages:
        now = datetime.now(UTC)
        seq = info.state.last_seq
        while seq >= info.state.first_seq and len(rows) < limit:
            try:
                msg = await js.get_msg(DLQ.name, seq)
            except NotFoundError:  # deleted (purged or replayed)
                seq -= 1
                continue
            seq -= 1
            headers = msg.headers or {}
            service = (msg.subject or "dlq.?").split(".")[1]
            rows.append(
                (
                    cell(msg.time, now),
                    service,
                    headers.get(HEADER_KIND, ""),
                    headers.get(HEADER_SUBJECT, ""),
                    cell(headers.get(HEADER_REASON, ""), now),
                )
            )
    return Section(
        "dead letters (`engram dlq` shows and replays them)",
        ("when", "worker", "kind", "subject", "reason"),
        rows,
        empty="none",
    )


def _table(section: Section, shown: int) -> RenderableType:
    # Its own line, not the table's title: that one wraps to a narrow table's width.
    title = Text(section.title, style="bold", no_wrap=True, overflow="ellipsis")
    if not section.rows:
        return title.append(f": {section.empty}", style="dim")
    table = Table(
        box=None,
        padding=(0, 1, 0, 0),
        header_style="dim",
        pad_edge=False,
    )
    for i, column in enumerate(section.columns):
        # Short columns (tenant, role, kind, "5 s ago") keep their width; long ones shrink.
        widest = max([len(column), *(len(row[i]) for row in section.rows[:shown])])
        table.add_column(
            column,
            no_wrap=True,
            overflow="ellipsis",
            min_width=min(SHORT_COLUMN, widest),
            max_width=MAX_COLUMN,
        )
    for row in section.rows[:shown]:
        table.add_row(*row)
    return Group(title, table)


def deal_rows(sections: Sequence[Section], room: int) -> list[int]:
    """How many rows each section shows: one to each in turn, while rows are left."""
    shown = [0] * len(sections)
    while room > 0:
        dealt = False
        for i, section in enumerate(sections):
            if room > 0 and shown[i] < len(section.rows):
                shown[i] += 1
                room -= 1
                dealt = True
        if not dealt:
            break
    return shown


def page(
    *,
    workers: Sequence[tuple[str, Worker]],
    activity: Activity,
    sections: Sequence[Section],
    height: int,
    footer: str,
    verbose: Sequence[RenderableType] = (),
) -> Group:
    """The whole screen, at most ``height`` lines (without ``verbose`` tables)."""
    now = time.monotonic()
    head: list[RenderableType] = [Text("what the workers did", style="bold")]
    head += [activity.line(name, worker, now) for name, worker in workers]
    # A section with rows costs its title and header lines; an empty one its title line.
    fixed = len(head) + 1 + sum(2 if s.rows else 1 for s in sections)
    shown = deal_rows(sections, max(0, height - fixed))
    body = [_table(s, n) for s, n in zip(sections, shown, strict=True)]
    return Group(
        *head, *body, *verbose, Text(footer, style="dim", no_wrap=True, overflow="ellipsis")
    )
