"""The memory service's pure rules: decay, recency, scores, clusters, summaries, contracts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.memory_jobs import ForgetPayload, Step
from contracts.memory_search import MemorySearchRequest
from services.memory.clusters import by_degree, neighbours, star_clusters, unit_mean
from services.memory.logic import (
    Weights,
    combined_importance,
    decayed,
    derived_id,
    effective_rate,
    estimate_tokens,
    recency,
    working_to_expire,
)
from services.memory.summary import central_order, keywords, lexical_summary

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def days(n: float) -> datetime:
    return T0 + timedelta(days=n)


@given(
    st.floats(0, 1), st.floats(0, 0.5), st.integers(0, 1000), st.floats(0, 100), st.floats(0, 100)
)
def test_decay_in_two_steps_equals_one(
    importance: float, rate: float, uses: int, a: float, b: float
) -> None:
    once = decayed(
        importance,
        decay_rate=rate,
        access_count=uses,
        decayed_at=T0,
        last_accessed_at=None,
        now=days(a + b),
    )
    first = decayed(
        importance,
        decay_rate=rate,
        access_count=uses,
        decayed_at=T0,
        last_accessed_at=None,
        now=days(a),
    )
    twice = decayed(
        first,
        decay_rate=rate,
        access_count=uses,
        decayed_at=days(a),
        last_accessed_at=None,
        now=days(a + b),
    )
    assert twice == pytest.approx(once, rel=1e-9, abs=1e-12)
    assert 0 <= once <= importance


def test_decay_counts_from_the_last_access_and_use_slows_it() -> None:
    fresh = decayed(
        0.8, decay_rate=0.1, access_count=0, decayed_at=T0, last_accessed_at=days(9), now=days(10)
    )
    assert fresh == pytest.approx(0.8 * 0.9)
    assert effective_rate(0.1, 0) == 0.1 and effective_rate(0.1, 10) < effective_rate(0.1, 1)
    # a clock before the last decay never raises importance
    assert (
        decayed(
            0.5,
            decay_rate=0.1,
            access_count=0,
            decayed_at=days(5),
            last_accessed_at=None,
            now=days(1),
        )
        == 0.5
    )


def test_recency_halves_every_half_life_and_scores_add_up() -> None:
    assert recency(T0, T0, 30) == 1.0
    assert recency(T0, days(30), 30) == pytest.approx(0.5)
    assert recency(T0, days(60), 30) == pytest.approx(0.25)
    w = Weights(0.6, 0.25, 0.15, 30)
    assert w.score(1, 1, 1) == pytest.approx(1.0)
    assert w.score(0.5, 0.2, 0.1) == pytest.approx(0.3 + 0.05 + 0.015)


def test_combined_importance_is_a_noisy_or() -> None:
    assert combined_importance([0.5, 0.5]) == pytest.approx(0.75)
    assert combined_importance([0.9]) == pytest.approx(0.9)
    assert combined_importance([1.0, 0.1]) == 1.0
    assert combined_importance([]) == 0.0


def test_working_memories_expire_by_ttl_and_beyond_capacity() -> None:
    a, b, c, d = (uuid4() for _ in range(4))
    rows = [(a, days(0)), (b, days(1.5)), (c, days(1.6)), (d, days(1.7))]
    expired = working_to_expire(rows, days(2), ttl_days=1, capacity=2)
    assert set(expired) == {a, b}
    assert working_to_expire(rows, days(2), ttl_days=10, capacity=10) == []


def test_tokens_and_derived_ids_are_stable() -> None:
    assert estimate_tokens("abcd" * 10) == 10 and estimate_tokens("") == 1
    j = uuid4()
    assert derived_id("merge", j, "a", "b") == derived_id("merge", j, "a", "b")
    assert derived_id("merge", j, "a", "b") != derived_id("merge", j, "b", "a")


def unit(rows: list[list[float]]) -> np.ndarray:
    v = np.asarray(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_neighbours_are_exact_and_capped() -> None:
    rng = np.random.default_rng(3)
    v = unit(rng.normal(size=(300, 16)).tolist())
    g = neighbours(v, threshold=0.3, max_neighbours=5)
    sims = v @ v.T
    for i in range(len(v)):
        want = sorted(
            (j for j in range(len(v)) if j != i and sims[i, j] >= 0.3), key=lambda j: -sims[i, j]
        )[:5]
        assert list(g.nbr[i]) == want
        assert np.allclose(g.sim[i], sims[i, want])


def test_stars_do_not_chain() -> None:
    # a ~ b and b ~ c, but a and c are far apart: components would join all three.
    angle = np.deg2rad(25)
    v = unit([[1, 0], [np.cos(angle), np.sin(angle)], [np.cos(2 * angle), np.sin(2 * angle)]])
    g = neighbours(v, threshold=0.85)
    clusters = star_clusters(g, [0, 1, 2], threshold=0.85)
    assert clusters == [[0, 1]]  # c stays alone
    centre_first = star_clusters(g, by_degree(g, 0.85), threshold=0.85)
    assert len(centre_first) == 1 and centre_first[0][0] == 1  # b is the centre
    assert sorted(centre_first[0]) == [0, 1, 2]
    # members must agree on `same` (e.g. the user) and be alive
    assert star_clusters(g, [1, 0, 2], 0.85, same=["u", "u", "v"]) == [[1, 0]]
    alive = np.array([True, True, False])
    assert star_clusters(g, [1, 0, 2], 0.85, alive=alive) == [[1, 0]]
    assert np.linalg.norm(unit_mean(v)) == pytest.approx(1.0)


def test_extractive_summaries_keep_central_sentences_in_order() -> None:
    texts = [
        "We booked Hotel Alfama in Lisbon. The weather was nice.",
        "Hotel Alfama in Lisbon is by the river.",
        "Lisbon hotel Alfama has quiet rooms. My cat is grey.",
    ]
    kept = lexical_summary(texts, keep=2)
    assert len(kept) == 2 and all("Alfama" in s for s in kept)
    assert kept == sorted(kept, key=lambda s: " ".join(texts).index(s))
    assert lexical_summary(["One. Two."], keep=5) == ["One.", "Two."]
    assert keywords(["hotel lisbon", "hotel porto", "the hotel"], keep=1) == ["hotel"]
    v = unit([[1, 0], [0.9, 0.1], [0.95, 0.05], [0, 1]])
    assert central_order(v)[-1] == 3


def test_forget_requests_must_say_what_to_erase() -> None:
    with pytest.raises(ValidationError, match="memory_ids or a filter"):
        ForgetPayload(requested_by="u")
    with pytest.raises(ValidationError, match="not both"):
        ForgetPayload(requested_by="u", memory_ids=[uuid4()], user_id="u-1")
    with pytest.raises(ValidationError, match="agent_id or user_id"):
        ForgetPayload(requested_by="u", conversation_id=uuid4())
    assert ForgetPayload(requested_by="u", user_id="u-1", conversation_id=uuid4())
    assert Step("merge") is Step.merge


def test_search_requests_need_tenant_and_agent() -> None:
    with pytest.raises(ValidationError, match="agent_id"):
        MemorySearchRequest.model_validate({"tenant_id": "acme", "text": "x"})
    r = MemorySearchRequest(tenant_id="acme", agent_id="a", text="x")
    assert r.top_k == 10 and not r.filters.include_superseded


def test_facts_read_numbers_dates_and_names_however_they_are_written() -> None:
    from services.memory.facts import compatible, facts

    a = facts("The user called on 18 January about order #89506, eight minutes late.")
    b = facts("On January 18 the user asked about order 89506 (8 minutes late).")
    assert a.dates == b.dates == {(1, 18)} and a.numbers == b.numbers == {"89506", "8"}
    assert compatible(a, b)
    assert compatible(facts("Met Ana on 2026-03-06."), facts("Ana: met on March 6."))
    # different facts, however close in meaning
    assert not compatible(
        facts("Chloe's order #93428 came broken"), facts("Chloe's order #82883 came broken")
    )
    assert not compatible(facts("Escalate a priority-two ticket"), facts("Escalate a P1 ticket"))
    assert not compatible(facts("Moved from Tuesday"), facts("Moved from Monday"))
    assert not compatible(facts("The user uses Ubuntu daily"), facts("The user uses Windows daily"))
    # a paraphrase may leave a fact out, and list numbering is not a fact
    assert compatible(facts("Flew to Santiago on October 10"), facts("Flew to Santiago"))
    assert facts("Steps: (1) log in; (2) export. 3. share").numbers == frozenset()


def test_complete_linkage_keeps_every_pair_within_the_group() -> None:
    from services.memory.clusters import complete_linkage

    angle = np.deg2rad(25)
    v = unit([[1, 0], [np.cos(angle), np.sin(angle)], [np.cos(2 * angle), np.sin(2 * angle)]])
    g = neighbours(v, threshold=0.85)
    assert complete_linkage(g, v, [0, 1, 2], 0.85, joinable=lambda a, b: True) in (
        [[0, 1]],
        [[1, 2]],
    )
    close = unit([[1, 0], [0.99, 0.05], [0.98, 0.08]])
    g = neighbours(close, threshold=0.9)
    assert complete_linkage(g, close, [2, 0, 1], 0.9, joinable=lambda a, b: True) == [[2, 0, 1]]
    assert complete_linkage(g, close, [2, 0, 1], 0.9, joinable=lambda a, b: {a, b} != {0, 2}) in (
        [[0, 1]],
        [[2, 1]],
    )


def test_a_forget_of_any_size_is_announced_in_notices_that_fit() -> None:
    from uuid import uuid4

    from contracts.memory_jobs import MAX_FORGOTTEN_IDS
    from services.memory.notices import forgotten_events

    cause = uuid4()
    ids = [uuid4() for _ in range(2 * MAX_FORGOTTEN_IDS + 1)]
    notices = forgotten_events("acme", cause, ids, "forget")
    assert [len(n.payload.memory_ids) for n in notices] == [MAX_FORGOTTEN_IDS] * 2 + [1]
    assert [i for n in notices for i in n.payload.memory_ids] == ids
    assert len({n.event_id for n in notices}) == 3
    assert notices[0].event_id == forgotten_events("acme", cause, ids[:1], "forget")[0].event_id
    assert max(len(n.model_dump_json()) for n in notices) < 1_048_576 - 4096
