"""Canonical JSON and digests: the byte forms every audit hash is computed over.

Canonical JSON is ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
encoded as UTF-8. A value is hashed once when it is written and again, years later, after
a round trip through PostgreSQL's ``jsonb`` (or an export file); both must give the same
bytes. ``jsonb`` keeps numbers as ``numeric`` and prints them without exponents, so the
parser here normalizes the few floats whose text would change on that trip:

* a float of magnitude >= 1e16 (Python prints ``1e+16``; ``jsonb`` prints the digits,
  which read back as an int) becomes that int: such floats are integers anyway;
* ``-0.0`` becomes ``0.0`` (``numeric`` has no negative zero);
* ``NaN`` and ``Infinity`` are not JSON and are refused.

Everything else (ints of any size, floats like ``1e-05``, strings) survives as is. Text that
``jsonb`` cannot hold (a NUL character, a lone surrogate) is refused with ``Unstorable``;
the audit writer then keeps the message's raw bytes instead (logic.build_record).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

ZERO_HASH = bytes(32)  # prev_hash of position 1 of every chain


class Unstorable(ValueError):
    """JSON that cannot be stored in jsonb and read back identically."""


def _parse_float(text: str) -> float | int:
    value = float(text)
    if not math.isfinite(value):
        raise Unstorable(f"number {text[:40]} is out of range")
    if value == 0.0:
        return 0.0
    if abs(value) >= 1e16:
        return int(value)
    return value


def _parse_constant(name: str) -> Any:
    raise Unstorable(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_float=_parse_float, parse_constant=_parse_constant)
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def loads(data: bytes | str) -> Any:
    """Strict JSON with the normalizations above; raises ValueError on anything else
    (invalid JSON or UTF-8, NaN, a NUL character, nesting too deep for Python)."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = _DECODER.decode(text)
    except RecursionError:
        raise Unstorable("JSON nested too deeply") from None
    # Only an escape can put NUL or a lone surrogate into decoded text; look closer then.
    if _SUSPECT.search(text) and _unstorable(value):
        raise Unstorable(
            "JSON text with a NUL character or a lone surrogate (jsonb cannot store it)"
        )
    return value


_SUSPECT = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


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


def dumps(value: Any) -> str:
    """Canonical JSON text: sorted keys, no spaces, non-ASCII kept as is."""
    return _ENCODER.encode(value)


def canonical(value: Any) -> bytes:
    """Canonical JSON as UTF-8 bytes; Unstorable for text with a lone surrogate."""
    try:
        return _ENCODER.encode(value).encode("utf-8")
    except UnicodeEncodeError:
        raise Unstorable("JSON text with a lone surrogate (not valid UTF-8)") from None
    except ValueError as exc:  # NaN or Infinity in a value built in Python
        raise Unstorable(str(exc)) from None


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


def uuid_text(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def hex_or_none(value: bytes | None) -> str | None:
    return None if value is None else value.hex()
