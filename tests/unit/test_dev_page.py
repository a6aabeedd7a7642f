"""The `engram dev` page on a 100x40 terminal: every section shows its newest rows and the
page never runs past the screen, however much is stored."""

from __future__ import annotations

from rich.console import Console

from services.runtime.devview import Activity, Section, ago, deal_rows, page


def sections(rows_each: int) -> list[Section]:
    dead = Section(
        "dead letters",
        ("when", "worker", "kind", "subject", "reason"),
        [
            ("3 s ago", "ingest", "invalid", "chat.message.created", f"reason number {i}")
            for i in range(rows_each)
        ],
    )
    messages = Section(
        "latest messages (ingest)",
        ("tenant", "conversation", "role", "content"),
        [("acme", "trip", "user", f"message {i} " + "long words " * 20) for i in range(rows_each)],
    )
    memories = Section("latest memories (memory)", ("tenant", "content"), [])
    states = Section(
        "agent states (checkpointer)",
        ("tenant", "version"),
        [("acme", str(v)) for v in range(rows_each)],
    )
    return [dead, messages, memories, states]


def rendered(height: int, rows_each: int) -> list[str]:
    console = Console(width=100, height=height, record=True, color_system=None)
    console.print(
        page(
            workers=[],
            activity=Activity(),
            sections=sections(rows_each),
            height=height - 1,
            footer="Ctrl-C stops everything.",
        )
    )
    return console.export_text().splitlines()


def test_a_full_store_fits_100x40_with_the_newest_of_each_section() -> None:
    lines = rendered(40, rows_each=10)
    assert len(lines) <= 39
    text = "\n".join(lines)
    for newest in (
        "reason number 0",
        "message 0",
        "agent states",
        "latest memories (memory): none yet",
    ):
        assert newest in text
    assert all(len(line) <= 100 for line in lines)
    assert "Ctrl-C stops everything." in lines[-1]


def test_few_rows_are_all_shown() -> None:
    text = "\n".join(rendered(40, rows_each=2))
    assert "reason number 1" in text and "message 1" in text


def test_rows_are_dealt_in_turn_and_never_beyond_the_room() -> None:
    s = sections(10)
    assert deal_rows(s, 7) == [3, 2, 0, 2]
    assert deal_rows(s, 100) == [10, 10, 0, 10]
    assert deal_rows(s, 0) == [0, 0, 0, 0]


def test_ages_in_words() -> None:
    assert [ago(0), ago(59), ago(61), ago(7200)] == ["0 s ago", "59 s ago", "1 min ago", "2 h ago"]
