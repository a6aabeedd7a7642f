"""Pure helpers about versions: the document's shape, its canonical JSON and hash,
snapshot compression, and rebuilding a version from a snapshot and patches.

Canonical JSON is UTF-8, object keys sorted, no whitespace (orjson with sorted keys);
the state hash is SHA-256 of it. Integers must fit in 64 bits.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import orjson
import zstandard

from contracts.state import PARTITIONS
from services.checkpointer.patch import Document, Json, Op, PatchRejected, apply_patch

_ARCHIVE_LEVEL = 19


def empty_state() -> Document:
    return {name: {} for name in PARTITIONS}


def check_shape(doc: Json) -> Document:
    """The document must keep exactly its four partitions, each a JSON object."""
    if not isinstance(doc, dict) or doc.keys() != set(PARTITIONS):
        keys = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise PatchRejected(
            f"the state must keep exactly the partitions {', '.join(PARTITIONS)}; got {keys}"
        )
    for name in PARTITIONS:
        if not isinstance(doc[name], dict):
            raise PatchRejected(f"partition {name!r} must stay an object")
    return doc


_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def canonical(doc: Json) -> bytes:
    try:
        return storable(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))
    except (TypeError, orjson.JSONEncodeError) as err:
        raise PatchRejected(f"the state is not storable JSON: {err}") from None


def storable(text: bytes) -> bytes:
    """PostgreSQL's jsonb cannot hold the character U+0000: refuse it up front."""
    if b"\\u0000" in text and _NUL.search(text):
        raise PatchRejected("strings may not contain the character U+0000")
    return text


def state_hash(canonical_json: bytes) -> bytes:
    return hashlib.sha256(canonical_json).digest()


def dumps(value: Json) -> str:
    """JSON text for a jsonb parameter (compact, keys as given)."""
    return storable(orjson.dumps(value)).decode()


def loads(text: str | bytes) -> Json:
    return orjson.loads(text)


@dataclass(frozen=True)
class Snapshot:
    data: bytes  # canonical JSON, maybe compressed
    compression: str  # "none" | "zstd"
    size_bytes: int  # uncompressed


def compress(
    canonical_json: bytes, *, threshold: int, level: int = 12, archive: bool = False
) -> Snapshot:
    """zstd above ``threshold`` bytes (always for archive retention, at a higher level)."""
    size = len(canonical_json)
    if size < threshold and not archive:
        return Snapshot(canonical_json, "none", size)
    level = _ARCHIVE_LEVEL if archive else level
    packed = zstandard.ZstdCompressor(level=level).compress(canonical_json)
    if len(packed) >= size and not archive:
        return Snapshot(canonical_json, "none", size)
    return Snapshot(packed, "zstd", size)


def decompress(data: bytes, compression: str) -> bytes:
    if compression == "none":
        return data
    if compression == "zstd":
        return zstandard.ZstdDecompressor().decompress(data)
    raise ValueError(f"unknown compression {compression!r}")


def read_snapshot(data: bytes, compression: str) -> Document:
    doc: Document = orjson.loads(decompress(data, compression))
    return doc


Direction = Literal["forward", "backward"]


def base_order(target: int, below: int | None, above: int | None) -> list[tuple[Direction, int]]:
    """The snapshots to rebuild ``target`` from, best first: the nearest one at or below it
    (replay patches forward) and at or above it (replay inverses backward), the one that
    needs fewer patches first (backward on a tie). The database function
    ``checkpoint.read_version`` makes the same choice."""
    options: list[tuple[int, Direction, int]] = []
    if below is not None and below <= target:
        options.append((target - below, "forward", below))
    if above is not None and above >= target:
        options.append((above - target, "backward", above))
    return [(direction, version) for _, direction, version in sorted(options)]


def replay(doc: Document, patches: Iterable[Sequence[Op]]) -> Document:
    """Apply patches in order (forward patches ascending, or inverses descending). The
    patches are freshly parsed and used once, so their values go in without a copy."""
    for ops in patches:
        doc, _ = apply_patch(doc, ops, copy_values=False)
    return check_shape(doc)
