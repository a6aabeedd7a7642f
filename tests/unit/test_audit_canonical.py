"""Canonical JSON: stable bytes, and values that survive PostgreSQL's jsonb unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.audit import canonical as c

# What jsonb can hold: no NUL, no lone surrogates (those are refused, tested below).
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=20,
)


def test_sorted_compact_utf8() -> None:
    assert (
        c.canonical({"b": 1, "a": [True, None, "é🌍"]}) == '{"a":[true,null,"é🌍"],"b":1}'.encode()
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e16", 10**16),
        ("-2.5e20", -(25 * 10**19)),
        ("-0.0", 0.0),
        ("1.0", 1.0),
        ("1E-5", 1e-5),
        ("123456789012345678901234567890", 123456789012345678901234567890),
    ],
)
def test_numbers_are_normalized_as_jsonb_prints_them(text: str, value: Any) -> None:
    parsed = c.loads(text)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize(
    "data",
    [
        b"NaN",
        b"[Infinity]",
        b"1e400",
        b'"\\u0000"',
        b'{"a\\u0000": 1}',
        b'"\\ud800"',
        b"\xff",
        b"{",
        b"[" * 100_000,
    ],
)
def test_what_jsonb_cannot_hold_is_refused(data: bytes) -> None:
    with pytest.raises((c.Unstorable, json.JSONDecodeError, UnicodeDecodeError)):
        c.loads(data)


def test_escaped_but_harmless_text_is_accepted() -> None:
    assert c.loads(b'"\\\\u0000 and \\ud83d\\ude00"') == "\\u0000 and 😀"


@given(JSON)
def test_canonical_is_a_fixpoint(value: Any) -> None:
    text = c.dumps(c.loads(json.dumps(value)))
    assert c.dumps(c.loads(text)) == text


def test_times_are_exact_microseconds() -> None:
    t = datetime(2026, 11, 1, 9, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert c.from_micros(c.to_micros(t)) == t
    assert c.timestamp(t) == "2026-11-01T07:00:00.123456Z"
    assert c.parse_timestamp("2026-11-01T07:00:00.123456789Z") == t.astimezone(UTC)
    for bad in ("2026-11-01T07:00:00", "yesterday", "0001-01-01T00:00:00+01:00"):
        with pytest.raises((ValueError, OverflowError)):
            c.parse_timestamp(bad)


# --- the definition (reference_bytes) and the fast writer (orjson) agree -----------------

SMALL_INTS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FAST_JSON = st.recursive(
    st.none()
    | st.booleans()
    | SMALL_INTS
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=20,
)


@given(FAST_JSON)
def test_reference_and_orjson_write_the_same_bytes(value: Any) -> None:
    assert c.reference_bytes(value) == orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_is_orjsons(value: float) -> None:
    assert c.float_text(value).encode() == orjson.dumps(value)


def test_pinned_vectors() -> None:
    """If a library upgrade changed any of these bytes, every stored hash would stop
    verifying: this must fail first."""
    value = {
        "é": [1e-7, 1.2e-5, 0.00012, 1.5, 1e15 + 0.5, -2.5e-300, 2**70, 'a\x01\n"\\\u2028'],
        "b": {"z": None, "a": True},
    }
    expected = (
        '{"b":{"a":true,"z":null},"é":[1e-7,0.000012,0.00012,1.5,1000000000000000.5,'
        '-2.5e-300,1180591620717411303424,"a\\u0001\\n\\"\\\\\u2028"]}'
    ).encode()
    assert c.canonical(value) == expected
    assert c.canonical(c.loads(expected)) == expected


def test_big_integers_are_exact() -> None:
    for number in (2**63, 2**64, -(2**63) - 1, 10**40):
        assert c.loads(str(number)) == number
        assert c.loads(f'{{"n": {number}, "f": 1e-7}}') == {"n": number, "f": 1e-7}
