"""The context service's budgeting and tokenizers: the total never exceeds the budget."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.context import SOURCE_KINDS, SegmentKind
from services.context.budget import Item, Source, allocate, dedupe, pack, plan
from services.context.build import fill
from services.context.tokens import tokenizer
from services.runtime.replies import QueryFailed

CL100K = tokenizer("cl100k_base")
MINILM = tokenizer("minilm")
SHARES = {SegmentKind.state: 0.1, SegmentKind.summary: 0.1, SegmentKind.memories: 0.2,
          SegmentKind.knowledge: 0.2, SegmentKind.messages: 0.4}  # fmt: skip

texts = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=80
)


def items(prefix: str) -> st.SearchStrategy[tuple[Item, ...]]:
    return st.lists(texts, max_size=8).map(
        lambda ts: tuple(
            Item(f"{prefix}{i}", f"- {t}", t, (f"{prefix}{i}",)) for i, t in enumerate(ts)
        )
    )


down = st.sets(st.sampled_from(SOURCE_KINDS))
sources = st.tuples(items("s"), items("u"), items("m"), items("k"), items("h"), down).map(
    lambda t: [
        Source(kind, t[i], missing="down" if kind in t[5] and i % 2 else None,
               newest_first=kind in (SegmentKind.messages, SegmentKind.summary))
        for i, kind in enumerate(SOURCE_KINDS)
    ]
)  # fmt: skip


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    budget=st.integers(1, 400),
    system=st.lists(texts, max_size=3),
    found=sources,
    name=st.sampled_from(["cl100k_base", "minilm"]),
)
def test_the_total_never_exceeds_the_budget(
    budget: int, system: list[str], found: list[Source], name: str
) -> None:
    tok = tokenizer(name)
    result = plan(budget, [Item(f"p{i}", t) for i, t in enumerate(system)], found, SHARES, tok)
    assert result.total_tokens <= budget
    for segment in result.segments:
        assert tok.count(segment.text) == segment.tokens
        assert segment.tokens <= segment.source_tokens or segment.source_tokens == 0


@given(available=st.integers(0, 5000), wants=st.lists(st.integers(0, 3000), min_size=5, max_size=5))
def test_allocation_uses_the_budget_and_never_gives_more_than_wanted(
    available: int, wants: list[int]
) -> None:
    asked = dict(zip(SOURCE_KINDS, wants, strict=True))
    alloc = allocate(available, asked, SHARES)
    assert all(alloc[k] <= asked[k] for k in asked)
    assert sum(alloc.values()) == min(available, sum(wants))


def test_a_source_needing_less_leaves_its_share_to_the_others() -> None:
    alloc = allocate(1000, {SegmentKind.state: 10, SegmentKind.messages: 5000}, SHARES)
    assert alloc == {SegmentKind.state: 10, SegmentKind.messages: 990}


@pytest.mark.parametrize("tok", [CL100K, MINILM], ids=["cl100k", "minilm"])
def test_recent_messages_keep_the_newest_and_cut_at_a_token_boundary(tok: object) -> None:
    newest_first = [Item(f"m{i}", f"user: message number {i} about the hotel") for i in range(20)]
    packed = pack(SegmentKind.messages, newest_first, 30, tok, newest_first=True)  # type: ignore[arg-type]
    assert packed.tokens == 30 and packed.truncated
    assert packed.text.endswith("message number 0 about the hotel")  # newest last
    assert packed.source_ids[-1] == "m0" and "m19" not in packed.source_ids
    assert len(packed.source_ids) < 20


def test_memories_keep_the_best_scored() -> None:
    best_first = [Item(f"k{i}", f"- fact {i} is a fact") for i in range(30)]
    packed = pack(SegmentKind.memories, best_first, 20, CL100K)
    assert packed.text.startswith("- fact 0 ") and packed.source_ids[0] == "k0"
    assert packed.tokens == 20


def test_text_in_two_sources_is_kept_once_in_the_preferred() -> None:
    message = Item("msg-1", "user: We booked Hotel Alfama.", "We booked Hotel Alfama.", ("msg-1",))
    chunk = Item("msg-1:0", "- we booked  hotel alfama.", "we booked  hotel alfama.", ("msg-1",))
    other = Item("file-9:0", "- The river is near.", "The river is near.", ("file-9",))
    memory = Item("mem-1", "- We booked Hotel Alfama.", "We booked Hotel Alfama.", ("mem-1",))
    found = dedupe(
        [
            Source(SegmentKind.knowledge, (chunk, other)),
            Source(SegmentKind.memories, (memory,)),
            Source(SegmentKind.messages, (message,), newest_first=True),
        ]
    )
    assert [i.id for i in found[0].items] == ["file-9:0"]
    assert found[1].items == ()
    assert [i.id for i in found[2].items] == ["msg-1"]


def test_two_chunks_of_one_file_are_both_kept() -> None:
    a = Item("f:0", "- part one", "part one", ("f",))
    b = Item("f:1", "- part two", "part two", ("f",))
    assert dedupe([Source(SegmentKind.knowledge, (a, b))])[0].items == (a, b)


def test_bpe_is_cl100k_and_cuts_never_split_a_character() -> None:
    assert CL100K.count("hello world") == 2
    text = "Olá, mundo! 日本語のテキスト <|endoftext|> end"
    for n in range(CL100K.count(text) + 1):
        head, count = CL100K.head(text, n)
        assert text.startswith(head) and count <= n and CL100K.count(head) == count
        tail, count = CL100K.tail(text, n)
        assert text.endswith(tail) and count <= n and CL100K.count(tail) == count


def test_variables_are_filled_and_a_missing_one_is_refused() -> None:
    assert fill("You are {agent_id}; {{literal}} {day}", {"agent_id": "bot", "day": "Mon"}) == (
        "You are bot; {literal} Mon"
    )
    with pytest.raises(QueryFailed, match="placeholder"):
        fill("Hello {nobody}", {})
