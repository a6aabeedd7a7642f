"""Patches made from documents, pure: RFC 7386 merge patches as RFC 6902 operations,
and a structural diff (the operations that turn one document into another)."""

from __future__ import annotations

import orjson

from services.checkpointer.patch import Document, Json, Op, PatchRejected, escape

_MISSING: Json = object()


def merge_to_ops(target: Json, merge: Document, prefix: str = "") -> list[Op]:
    """RFC 7386: the RFC 6902 operations that merging ``merge`` into ``target`` means.

    Keys set to the value they already have produce no operation.
    """
    if not isinstance(target, dict):
        raise PatchRejected(f"{prefix or 'the root'} is not an object")
    ops: list[Op] = []
    for key, value in merge.items():
        path = f"{prefix}/{escape(key)}"
        current = target.get(key, _MISSING)
        if value is None:
            if current is not _MISSING:
                ops.append({"op": "remove", "path": path})
        elif isinstance(value, dict) and isinstance(current, dict):
            ops.extend(merge_to_ops(current, value, path))
        elif current is _MISSING or not _same(current, value):
            ops.append({"op": "add", "path": path, "value": _strip_nulls(value)})
    return ops


def _strip_nulls(value: Json) -> Json:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    return value


def _same(a: Json, b: Json) -> bool:
    """Identical as JSON text (1 and 1.0 differ), checked at C speed."""
    return bool(a == b) and canonical_or_none(a) == canonical_or_none(b)


def canonical_or_none(value: Json) -> bytes | None:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return None


def diff(a: Json, b: Json, prefix: str = "") -> list[Op]:
    """RFC 6902 operations that turn ``a`` into ``b`` (values are shared with ``b``)."""
    if _same(a, b):
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        ops: list[Op] = [{"op": "remove", "path": f"{prefix}/{escape(k)}"} for k in a if k not in b]
        for key, value in b.items():
            path = f"{prefix}/{escape(key)}"
            if key in a:
                ops.extend(diff(a[key], value, path))
            else:
                ops.append({"op": "add", "path": path, "value": value})
        return ops
    if isinstance(a, list) and isinstance(b, list):
        ops = []
        for i in range(min(len(a), len(b))):
            ops.extend(diff(a[i], b[i], f"{prefix}/{i}"))
        ops.extend(
            {"op": "add", "path": f"{prefix}/{i}", "value": b[i]} for i in range(len(a), len(b))
        )
        ops.extend(
            {"op": "remove", "path": f"{prefix}/{i}"} for i in reversed(range(len(b), len(a)))
        )
        return ops
    return [{"op": "replace", "path": prefix, "value": b}]
