"""The JSON Patch engine: RFC 6902 examples, exact inverses, merge patches, diff."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.checkpointer.patch import (
    PatchRejected,
    apply_patch,
    escape,
    json_equal,
    parse_pointer,
)
from services.checkpointer.patch_diff import diff, merge_to_ops


def canon(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def patched(doc: Any, ops: list[dict[str, Any]]) -> Any:
    return apply_patch(copy.deepcopy(doc), ops)[0]


# RFC 6902 appendix A (the examples that succeed, and those that must fail).
@pytest.mark.parametrize(
    ("doc", "ops", "expected"),
    [
        (
            {"foo": "bar"},
            [{"op": "add", "path": "/baz", "value": "qux"}],
            {"baz": "qux", "foo": "bar"},
        ),
        (
            {"foo": ["bar", "baz"]},
            [{"op": "add", "path": "/foo/1", "value": "qux"}],
            {"foo": ["bar", "qux", "baz"]},
        ),
        ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
        (
            {"foo": ["bar", "qux", "baz"]},
            [{"op": "remove", "path": "/foo/1"}],
            {"foo": ["bar", "baz"]},
        ),
        (
            {"baz": "qux", "foo": "bar"},
            [{"op": "replace", "path": "/baz", "value": "boo"}],
            {"baz": "boo", "foo": "bar"},
        ),
        (
            {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
            [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
            {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
        ),
        (
            {"foo": ["all", "grass", "cows", "eat"]},
            [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
            {"foo": ["all", "cows", "eat", "grass"]},
        ),
        (
            {"baz": "qux", "foo": ["a", 2, "c"]},
            [
                {"op": "test", "path": "/baz", "value": "qux"},
                {"op": "test", "path": "/foo/1", "value": 2},
            ],
            {"baz": "qux", "foo": ["a", 2, "c"]},
        ),
        (
            {"foo": "bar"},
            [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
            {"foo": "bar", "child": {"grandchild": {}}},
        ),
        (
            {"foo": ["bar"]},
            [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
            {"foo": ["bar", ["abc", "def"]]},
        ),
        ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
        ({"foo": 1}, [{"op": "copy", "from": "/foo", "path": "/bar"}], {"foo": 1, "bar": 1}),
        ({"foo": 1}, [{"op": "test", "path": "/foo", "value": 1.0}], {"foo": 1}),
    ],
)
def test_rfc6902_examples(doc: Any, ops: list[dict[str, Any]], expected: Any) -> None:
    result, inverse = apply_patch(copy.deepcopy(doc), ops)
    assert result == expected
    assert canon(patched(result, inverse)) == canon(doc)


@pytest.mark.parametrize(
    ("doc", "ops", "reason"),
    [
        ({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}], "test failed"),
        ({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}], "does not exist"),
        ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}], "test failed"),
        ({"foo": ["bar"]}, [{"op": "add", "path": "/foo/5", "value": 1}], "out of range"),
        ({"foo": ["bar"]}, [{"op": "remove", "path": "/foo/-"}], "not an array index"),
        ({"foo": ["bar"]}, [{"op": "add", "path": "/foo/01", "value": 1}], "not an array index"),
        ({"foo": 1}, [{"op": "replace", "path": "/nope", "value": 1}], "does not exist"),
        ({"foo": 1}, [{"op": "add", "path": "/foo/x", "value": 1}], "not a container"),
        ({"a": {"b": 1}}, [{"op": "move", "from": "/a", "path": "/a/c"}], "own children"),
        ({"a": True}, [{"op": "test", "path": "/a", "value": 1}], "test failed"),
        ({"a": 1}, [{"op": "remove", "path": ""}], "whole document"),
        ({"a": 1}, [{"op": "add", "path": "/a~2", "value": 1}], "'~'"),
    ],
)
def test_rejected_patches_name_the_op_and_leave_the_doc(
    doc: Any, ops: list[dict[str, Any]], reason: str
) -> None:
    work = copy.deepcopy(doc)
    # A successful first op must be rolled back when a later one fails.
    with pytest.raises(PatchRejected, match=reason) as err:
        apply_patch(work, [{"op": "add", "path": "/zz", "value": [1]}, *ops])
    assert "operation 1" in str(err.value)
    assert canon(work) == canon(doc)


def test_inserted_values_are_not_shared() -> None:
    value = {"k": [1]}
    doc, _ = apply_patch(
        {},
        [
            {"op": "add", "path": "/a", "value": value},
            {"op": "copy", "from": "/a", "path": "/b"},
            {"op": "add", "path": "/a/k/-", "value": 2},
        ],
    )
    assert value == {"k": [1]}
    assert doc == {"a": {"k": [1, 2]}, "b": {"k": [1]}}


def test_pointer_escaping_round_trips() -> None:
    for token in ("a/b", "m~n", "~1", "", "plain"):
        assert parse_pointer("/" + escape(token)) == [token]
    assert parse_pointer("") == []


def test_json_equality_is_jsons() -> None:
    assert json_equal(1, 1.0)
    assert not json_equal(True, 1)
    assert not json_equal({"a": [1]}, {"a": [True]})
    assert json_equal({"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]})


def merge_reference(target: Any, patch: Any) -> Any:
    """RFC 7386 section 2, literally."""
    if isinstance(patch, dict):
        if not isinstance(target, dict):
            target = {}
        result = dict(target)
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = merge_reference(result.get(key), value)
        return result
    return patch


# ---- properties ----

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False)
)
keys = st.sampled_from(["a", "b", "c", "a/b", "m~n", "0", ""])
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)
documents = st.dictionaries(keys, json_values, max_size=5)


def paths(doc: Any, prefix: str = "") -> list[str]:
    found = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            found += paths(v, f"{prefix}/{escape(k)}")
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += paths(v, f"{prefix}/{i}")
    return found


@st.composite
def patch_for(draw: st.DrawFn, doc: Any) -> list[dict[str, Any]]:
    existing = paths(doc)
    ops = []
    for _ in range(draw(st.integers(1, 6))):
        target = draw(st.sampled_from(existing))
        fresh = target + "/" + draw(st.sampled_from(["-", "0", "1", "new", "a"]))
        path = draw(st.sampled_from([target, fresh]))
        kind = draw(st.sampled_from(["add", "remove", "replace", "move", "copy", "test"]))
        op: dict[str, Any] = {"op": kind, "path": path}
        if kind in ("add", "replace", "test"):
            op["value"] = draw(json_values)
        if kind in ("move", "copy"):
            op["from"] = draw(st.sampled_from(existing))
        ops.append(op)
    return ops


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_apply_then_inverse_restores_or_rejects_cleanly(data: st.DataObject) -> None:
    original = data.draw(documents)
    ops = data.draw(patch_for(original))
    work = copy.deepcopy(original)
    try:
        result, inverse = apply_patch(work, ops)
    except PatchRejected:
        assert canon(work) == canon(original)
        return
    after = canon(result)
    restored, again = apply_patch(result, inverse)
    assert canon(restored) == canon(original)
    # The inverse of the inverse is the patch again (in effect).
    assert canon(apply_patch(restored, again)[0]) == after


@settings(max_examples=300)
@given(documents, documents)
def test_diff_turns_a_into_b(a: Any, b: Any) -> None:
    ops = diff(a, b)
    assert canon(patched(a, ops)) == canon(b)
    assert diff(a, a) == []


@settings(max_examples=300)
@given(documents, st.dictionaries(keys, json_values | st.none(), max_size=5))
def test_merge_patch_matches_rfc7386(doc: Any, merge: dict[str, Any]) -> None:
    ops = merge_to_ops(doc, merge)
    assert canon(patched(doc, ops)) == canon(merge_reference(doc, merge))


def test_merge_patch_skips_unchanged_keys_and_keeps_number_types() -> None:
    assert merge_to_ops({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 2}}) == []
    assert merge_to_ops({"a": 1}, {"a": 1.0}) == [{"op": "add", "path": "/a", "value": 1.0}]
