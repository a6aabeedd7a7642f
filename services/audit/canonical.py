"""Canonical JSON and digests: the byte forms every audit hash is computed over.

Canonical JSON (version 1), UTF-8:

* objects with their keys sorted by code point, no whitespace anywhere;
* strings with only ``"``, ``\\`` and control characters escaped (``\\n`` ``\\r`` ``\\t``
  ``\\b`` ``\\f``, the others as ``\\u00xx``); everything else as UTF-8;
* integers in decimal, of any size;
* floats as the shortest digits that read back as the same double, in decimal notation
  when 1e-5 <= |x| < 1e16 (``0.00012``, ``1.0``) and as ``d.ddde±N`` otherwise (``1.5e-7``).

``reference_bytes`` below is that definition in plain Python; orjson (``OPT_SORT_KEYS``)
writes the same bytes much faster and is used whenever it can (it cannot write integers
beyond 64 bits). A unit test holds the two to each other, so an orjson upgrade that wrote
floats differently would fail the build instead of every later verification.

A value is hashed when it is written and again, years later, after a round trip through
PostgreSQL's ``jsonb`` (or an export); both must give the same bytes. ``jsonb`` keeps
numbers as ``numeric`` and prints them without exponents, so parsing normalizes the floats
whose form that trip would change: one of magnitude >= 1e16 becomes its integer (it is
one), ``-0.0`` becomes ``0.0``; NaN and Infinity are refused. Text ``jsonb`` cannot hold
(NUL, a lone surrogate) is refused with ``Unstorable``: such a message is kept as raw bytes.

Nesting is bounded by orjson: it reads 1,024 levels but writes only ``MAX_DEPTH`` (254).
``loads`` refuses anything deeper than it is asked to accept with ``TooDeep``, so every
value that is hashed, stored and exported can be written and read back by the fast path
(and the plain-Python fallbacks, which recurse, never go deeper than that either).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

ZERO_HASH = bytes(32)  # prev_hash of position 1 of every chain
MAX_DEPTH = 254  # levels of arrays and objects orjson writes (it fails at 255)


class Unstorable(ValueError):
    """JSON that cannot be stored in jsonb and read back identically."""


class TooDeep(Unstorable):
    """JSON nested deeper than the reader accepts."""


# --- parsing --------------------------------------------------------------------------

# Only an escape can put NUL or a lone surrogate into decoded text.
_SUSPECT = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def _number(value: float) -> float | int:
    if not math.isfinite(value):
        raise Unstorable(f"number {value} is out of range")
    if value == 0.0:
        return 0.0
    if abs(value) >= 1e16:
        return int(value)
    return value


def _parse_float(text: str) -> float | int:
    return _number(float(text))


def _parse_constant(name: str) -> Any:
    raise Unstorable(f"{name} is not JSON")


_EXACT = json.JSONDecoder(parse_float=_parse_float, parse_constant=_parse_constant)
_TOO_DEEP = object()


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Strict JSON with the normalizations above; raises ValueError on anything else
    (invalid JSON or UTF-8, NaN, a NUL character), TooDeep beyond ``max_depth`` levels."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    value: Any
    try:
        value = orjson.loads(raw)
        # orjson reads an integer beyond 64 bits as a float (losing digits), and a float
        # that needs normalizing is one it writes with "e+" (>= 1e16) or as -0.0: then
        # parse exactly. A string with those letters only costs the slower path. Writing
        # fails (TypeError) beyond MAX_DEPTH levels, which the wrapping lowers to max_depth.
        written = orjson.dumps(_nested(value, MAX_DEPTH - max_depth))
        if b"e+" in written or b"-0.0" in written:
            raise ValueError("parse exactly")
    except (ValueError, TypeError):  # the exact parser says precisely what is wrong
        try:
            value = _EXACT.decode(raw.decode("utf-8"))
        except RecursionError:  # Python's parser stops near 1,000 levels
            value = _TOO_DEEP
        if value is _TOO_DEEP or depth(value) > max_depth:
            raise TooDeep(f"JSON nested deeper than {max_depth} levels") from None
    if _SUSPECT.search(raw) and _unstorable(value):
        raise Unstorable(
            "JSON text with a NUL character or a lone surrogate (jsonb cannot store it)"
        )
    return value


def _nested(value: Any, levels: int) -> Any:
    for _ in range(levels):
        value = [value]
    return value


def depth(value: Any) -> int:
    """Levels of arrays and objects (a scalar: 0, ``[]``: 1); iterative, for any depth."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        level += 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in item)
    return deepest


def string_members(data: bytes) -> dict[str, str] | None:
    """The members of a JSON object whose values are strings jsonb can hold, for a body
    ``loads`` refuses as too deep: orjson reads it if it is at most 1,024 levels deep
    (else None). Only strings are taken, so nothing deep is kept."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    return {
        k: v
        for k, v in body.items()
        if isinstance(v, str) and not _bad_text(k) and not _bad_text(v)
    }


def _bad_text(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _unstorable(value: Any) -> bool:
    if isinstance(value, str):
        return _bad_text(value)
    if isinstance(value, dict):
        return any(_bad_text(k) or _unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_unstorable(v) for v in value)
    return False


# --- writing --------------------------------------------------------------------------


def canonical(value: Any) -> bytes:
    """Canonical JSON bytes; Unstorable for text with a lone surrogate."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, or a lone surrogate
        return reference_bytes(value)


def dumps(value: Any) -> str:
    """Canonical JSON as text."""
    return canonical(value).decode("utf-8")


def reference_bytes(value: Any) -> bytes:
    """The definition of canonical JSON, in plain Python (see the module's doc)."""
    parts: list[bytes] = []
    _write(value, parts.append)
    return b"".join(parts)


def _write(value: Any, emit: Callable[[bytes], object]) -> None:
    if value is None or isinstance(value, bool):
        emit(b"null" if value is None else b"true" if value else b"false")
    elif isinstance(value, str):
        emit(_string(value))
    elif isinstance(value, int):
        emit(str(value).encode())
    elif isinstance(value, float):
        emit(float_text(value).encode())
    elif isinstance(value, dict):
        emit(b"{")
        for i, key in enumerate(sorted(value)):
            emit(b"," + _string(key) + b":" if i else _string(key) + b":")
            _write(value[key], emit)
        emit(b"}")
    elif isinstance(value, list | tuple):
        emit(b"[")
        for i, item in enumerate(value):
            if i:
                emit(b",")
            _write(item, emit)
        emit(b"]")
    else:
        raise TypeError(f"not JSON: {type(value).__name__}")


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def _string(text: str) -> bytes:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    try:
        return ('"' + "".join(out) + '"').encode("utf-8")
    except UnicodeEncodeError:
        raise Unstorable("JSON text with a lone surrogate (not valid UTF-8)") from None


def float_text(value: float) -> str:
    """Shortest round-trip digits; decimal notation for 1e-5 <= |x| < 1e16."""
    if not math.isfinite(value):
        raise Unstorable(f"number {value} is not JSON")
    text = repr(value)  # Python writes decimal for 1e-4 <= |x| < 1e16, else d.ddde±NN
    if "e" not in text:
        return text
    mantissa, _, exp = text.partition("e")
    power = int(exp)
    if power == -5:  # 1e-5 <= |x| < 1e-4: decimal here
        sign = "-" if mantissa.startswith("-") else ""
        return f"{sign}0.0000{mantissa.lstrip('-').replace('.', '')}"
    return f"{mantissa}e{'+' if power > 0 else '-'}{abs(power)}"


# --- digests and times ----------------------------------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha256_text(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def micros(value: datetime | None) -> int | None:
    """Microseconds since the Unix epoch: exact, and cheap to hash."""
    return None if value is None else (value - EPOCH) // MICROSECOND


def to_micros(value: datetime) -> int:
    return (value - EPOCH) // MICROSECOND


def from_micros(value: int) -> datetime:
    return EPOCH + value * MICROSECOND


def timestamp(value: datetime | None) -> str | None:
    """UTC with microseconds and a Z: the precision of PostgreSQL's timestamptz."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    """An ISO 8601 / RFC 3339 time with a zone (fractions finer than microseconds are cut);
    ValueError without a zone, OverflowError outside what PostgreSQL holds."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("a time without a zone")
    value.astimezone(UTC)  # raises OverflowError at the ends of the calendar
    return value


def hex_or_none(value: bytes | None) -> str | None:
    return None if value is None else value.hex()
