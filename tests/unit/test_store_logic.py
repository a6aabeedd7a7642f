"""The LangGraph store's pure parts: SQL builders (parameters, never spliced values), the
client's text extraction and op translation, the service's memory mapping."""

from __future__ import annotations

import pytest
from langgraph.store.base import ListNamespacesOp, MatchCondition
from pydantic import ValidationError

from contracts import store as wire
from contracts.registry import QUERIES
from engram_client.store import index_texts, match_paths
from services.memory.store import importance_of, memory_id_of, memory_text, texts_of
from services.memory.store_sql import (
    FilterError,
    Where,
    exact_prefix,
    namespace_prefix,
    namespace_suffix,
    value_filter,
)


def test_value_filter_is_parameters_only() -> None:
    where = Where(first=3)
    value_filter(where, {"color": "red'; DROP TABLE x;--", "score": {"$gt": 3.2, "$ne": 4}})
    assert where.conditions == [
        "(value -> $3) = $4::jsonb",
        "(value -> $5) > $6::jsonb",
        "(value -> $7) IS DISTINCT FROM $8::jsonb",
    ]
    assert where.params == ["color", "red'; DROP TABLE x;--", "score", 3.2, "score", 4]
    assert "DROP" not in where.sql()


def test_value_filter_equal_to_an_object_and_unknown_operators() -> None:
    where = Where(first=1)
    value_filter(where, {"meta": {"a": 1}})  # not operators: an object to equal
    assert where.conditions == ["(value -> $1) = $2::jsonb"]
    with pytest.raises(FilterError, match=r"\$near"):
        value_filter(Where(first=1), {"n": {"$near": 1}})


def test_namespace_prefix_and_suffix_with_wildcards() -> None:
    where = Where(first=2)
    namespace_prefix(where, ["uid", "*", "alice"])
    namespace_suffix(where, ["*", "public"])
    assert where.conditions == [
        "cardinality(namespace) >= 3",
        "namespace[1] = $2",
        "namespace[3] = $3",
        "cardinality(namespace) >= 2",
        "namespace[cardinality(namespace) - 0] = $4",
    ]
    assert where.params == ["uid", "alice", "public"]
    empty = Where(first=1)
    namespace_prefix(empty, [])
    exact_prefix(empty, [])
    assert empty.sql() == "" and empty.params == []


def test_exact_prefix_compares_whole_labels() -> None:
    where = Where(first=1)
    exact_prefix(where, ["foo", "child"])
    assert where.conditions == ["namespace >= $1::text[]", "namespace[1:2] = $1::text[]"]
    assert where.params == [["foo", "child"]]


def test_index_texts_name_paths_as_postgres_store() -> None:
    value = {"text": "hello", "tags": ["a", "b"], "nested": {"x": "deep"}}
    texts = index_texts(value, ["text", "tags[*]", "nested.x", "missing"])
    assert [(t.path, t.text) for t in texts] == [
        ("text", "hello"),
        ("tags[*].0", "a"),
        ("tags[*].1", "b"),
        ("nested.x", "deep"),
    ]
    whole = index_texts({"a": 1}, ["$"])
    assert len(whole) == 1 and '"a": 1' in whole[0].text


def test_match_paths() -> None:
    op = ListNamespacesOp(
        match_conditions=(
            MatchCondition(match_type="prefix", path=("a", "*")),
            MatchCondition(match_type="suffix", path=("z",)),
        )
    )
    assert match_paths(op) == (["a", "*"], ["z"])
    assert match_paths(ListNamespacesOp(match_conditions=None)) == (None, None)


def test_memory_mapping() -> None:
    op = wire.PutOp(
        namespace=["u"],
        key="k",
        value={"importance": 0.9},
        texts=[wire.IndexedText(path="a", text="one"), wire.IndexedText(path="b", text="two")],
    )
    assert memory_text(op) == "one\ntwo"
    assert importance_of({"importance": 0.9}, 0.5) == 0.9
    for bad in (True, 2, "high", None):
        assert importance_of({"importance": bad}, 0.5) == 0.5
    assert memory_id_of("acme", ["u"], "k") == memory_id_of("acme", ["u"], "k")
    assert memory_id_of("acme", ["u"], "k") != memory_id_of("other", ["u"], "k")
    assert memory_id_of("acme", ["u", "k"], "x") != memory_id_of("acme", ["u"], "k/x")
    search = wire.SearchOp(query="one")
    delete = wire.PutOp(namespace=["u"], key="gone", value=None, texts=op.texts)
    assert texts_of([op, search, delete, wire.SearchOp(query="")]) == ["one", "two", "one\ntwo"]


def test_batch_contract() -> None:
    req = wire.StoreBatchRequest.model_validate_json(
        '{"tenant_id": "acme", "ops": [{"op": "get", "namespace": ["a"], "key": "k"},'
        ' {"op": "put", "namespace": ["a"], "key": "k", "value": null},'
        ' {"op": "search"}, {"op": "list_namespaces", "max_depth": 2}]}'
    )
    assert [type(o).__name__ for o in req.ops] == ["GetOp", "PutOp", "SearchOp", "ListNamespacesOp"]
    for bad in (
        '{"tenant_id": "acme", "ops": []}',
        '{"tenant_id": "acme", "ops": [{"op": "get", "namespace": [], "key": "k"}]}',
        '{"tenant_id": "a,b", "ops": [{"op": "search"}]}',
        '{"tenant_id": "acme", "ops": [{"op": "search", "limit": 0}]}',
    ):
        with pytest.raises(ValidationError):
            wire.StoreBatchRequest.model_validate_json(bad)
    assert set(wire.COMMANDS) <= set(QUERIES)
