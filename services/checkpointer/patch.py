"""The JSON Patch engine of the checkpointer, pure: JSON Pointers, JSON equality, and
RFC 6902 apply with its exact inverse (patches made from documents: patch_diff.py).

``apply_patch`` changes the document in place (no copy of a 50 KB state per version) and
returns the inverse patch, built from the values each operation removes or overwrites, so
the cost is that of the patch, not of the document. When an operation fails, the ones
already applied are undone with that same inverse before ``PatchRejected`` is raised: the
document is never left half-patched.

Values a patch inserts are copied, never shared with the event or with another place in
the document, so later operations cannot reach back into an earlier patch or inverse.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from typing import Any

import orjson

# A JSON value. Any rather than a recursive union: documents come from orjson.loads and
# operations from pydantic models, and the engine narrows with isinstance where it must.
Json = Any
Document = dict[str, Json]  # an object at the root: a state's four partitions
Op = dict[str, Json]  # one RFC 6902 operation
Copy = Callable[[Json], Json]
_MISSING: Json = object()
_INDEX = re.compile(r"0|[1-9][0-9]*")


class PatchRejected(ValueError):
    """A patch that cannot be applied to the current state (bad path, failed test...)."""


def parse_pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchRejected(f"{path!r} is not a JSON Pointer (it must start with '/')")
    if "~" not in path:  # nothing escaped: the common case, and the hot one on replay
        return path[1:].split("/")
    if re.search(r"~(?![01])", path):
        raise PatchRejected(f"{path!r}: '~' must be followed by 0 or 1")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def escape(token: str) -> str:
    if "~" not in token and "/" not in token:
        return token
    return token.replace("~", "~0").replace("/", "~1")


def clone(value: Json) -> Json:
    if value is None or isinstance(value, str | int | float):
        return value
    try:
        return orjson.loads(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):  # integers beyond 64 bits
        return copy.deepcopy(value)


def json_equal(a: Json, b: Json) -> bool:
    """JSON equality (RFC 6902 `test`): numbers by value, but true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _index(token: str, length: int, *, end: bool) -> int:
    if token == "-" and end:
        return length
    if not _INDEX.fullmatch(token):
        raise PatchRejected(f"{token!r} is not an array index")
    i = int(token)
    if i > length or (i == length and not end):
        raise PatchRejected(f"index {i} is out of range (array length {length})")
    return i


def _get(doc: Json, tokens: Sequence[str]) -> Json:
    node = doc
    for depth, token in enumerate(tokens):
        if isinstance(node, dict):
            if token not in node:
                raise PatchRejected(f"path {_join(tokens[: depth + 1])} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(token, len(node), end=False)]
        else:
            raise PatchRejected(f"{_join(tokens[:depth]) or 'the root'} is not a container")
    return node


def _join(tokens: Sequence[str]) -> str:
    return "/" + "/".join(map(escape, tokens)) if tokens else ""


class _Doc:
    """The document being patched, boxed so that the root itself can be replaced."""

    def __init__(self, doc: Json) -> None:
        self.root = doc

    def put(self, tokens: list[str], value: Json) -> tuple[str, Json]:
        """`add` semantics; returns the concrete path and the value overwritten (if any)."""
        if not tokens:
            old, self.root = self.root, value
            return "", old
        parent, key = _get(self.root, tokens[:-1]), tokens[-1]
        if isinstance(parent, dict):
            old = parent.get(key, _MISSING)
            parent[key] = value
            return _join(tokens), old
        if isinstance(parent, list):
            i = _index(key, len(parent), end=True)
            parent.insert(i, value)
            return _join([*tokens[:-1], str(i)]), _MISSING
        raise PatchRejected(f"{_join(tokens[:-1]) or 'the root'} is not a container")

    def set(self, tokens: list[str], value: Json) -> tuple[str, Json]:
        """`replace` semantics: the path must exist; returns it and the value replaced."""
        if not tokens:
            old, self.root = self.root, value
            return "", old
        parent, key = _get(self.root, tokens[:-1]), tokens[-1]
        if isinstance(parent, dict):
            if key not in parent:
                raise PatchRejected(f"path {_join(tokens)} does not exist")
            old, parent[key] = parent[key], value
            return _join(tokens), old
        if isinstance(parent, list):
            i = _index(key, len(parent), end=False)
            old, parent[i] = parent[i], value
            return _join([*tokens[:-1], str(i)]), old
        raise PatchRejected(f"{_join(tokens[:-1]) or 'the root'} is not a container")

    def take(self, tokens: list[str]) -> tuple[str, Json]:
        """`remove` semantics; returns the concrete path and the value removed."""
        if not tokens:
            raise PatchRejected("the whole document cannot be removed")
        parent, key = _get(self.root, tokens[:-1]), tokens[-1]
        if isinstance(parent, dict):
            if key not in parent:
                raise PatchRejected(f"path {_join(tokens)} does not exist")
            return _join(tokens), parent.pop(key)
        if isinstance(parent, list):
            i = _index(key, len(parent), end=False)
            return _join([*tokens[:-1], str(i)]), parent.pop(i)
        raise PatchRejected(f"{_join(tokens[:-1]) or 'the root'} is not a container")


def _undo_put(path: str, old: Json) -> list[Op]:
    if old is _MISSING:
        return [{"op": "remove", "path": path}]
    return [{"op": "replace", "path": path, "value": old}]


def _own(value: Json) -> Json:
    return value


def _add(doc: _Doc, tokens: list[str], op: Op, fresh: Copy) -> list[Op]:
    return _undo_put(*doc.put(tokens, fresh(op["value"])))


def _remove(doc: _Doc, tokens: list[str], op: Op, fresh: Copy) -> list[Op]:
    path, old = doc.take(tokens)
    return [{"op": "add", "path": path, "value": old}]


def _replace(doc: _Doc, tokens: list[str], op: Op, fresh: Copy) -> list[Op]:
    path, old = doc.set(tokens, fresh(op["value"]))
    return [{"op": "replace", "path": path, "value": old}]


def _copy(doc: _Doc, tokens: list[str], op: Op, fresh: Copy) -> list[Op]:
    if not tokens:
        raise PatchRejected("cannot copy onto the whole document")
    return _undo_put(*doc.put(tokens, clone(_get(doc.root, parse_pointer(op["from"])))))


def _move(doc: _Doc, tokens: list[str], op: Op, fresh: Copy) -> list[Op]:
    source = parse_pointer(op["from"])
    if not tokens or not source:
        raise PatchRejected("cannot move to or from the whole document")
    if source == tokens:
        return []
    if tokens[: len(source)] == source:
        raise PatchRejected("cannot move a value into one of its own children")
    origin, value = doc.take(source)
    try:
        path, old = doc.put(tokens, value)
    except PatchRejected:
        doc.put(parse_pointer(origin), value)
        raise
    # Undo at `path` as it is now (put back what the value overwrote, or take it out),
    # then put the value back where it was; re-inserting it there shifts list indices
    # back, so the order matters. Not a move back: after the list shifts, `origin` may
    # lie under `path`, which RFC 6902 forbids for a move.
    undo = _undo_put(path, old)[0]
    return [undo, {"op": "add", "path": origin, "value": clone(value)}]


def _test(doc: _Doc, tokens: list[str], op: Op, fresh: Copy) -> list[Op]:
    actual = _get(doc.root, tokens)
    if not json_equal(actual, op["value"]):
        raise PatchRejected(f"test failed: {_short(actual)} is not {_short(op['value'])}")
    return []


_OPS = {
    "add": _add,
    "remove": _remove,
    "replace": _replace,
    "move": _move,
    "copy": _copy,
    "test": _test,
}


def _apply_op(doc: _Doc, op: Op, fresh: Copy = clone) -> list[Op]:
    """Apply one operation; returns the operations that undo it. Inserted values are
    copied (``fresh``), except when rolling back: then they are our own detached values,
    and the caller's objects must be put back themselves."""
    handler = _OPS.get(op.get("op", ""))
    if handler is None:
        raise PatchRejected(f"unknown operation {op.get('op')!r}")
    return handler(doc, parse_pointer(op["path"]), op, fresh)


def _short(value: Json) -> str:
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= 80 else text[:77] + "..."


def apply_patch(doc: Json, ops: Sequence[Op], *, copy_values: bool = True) -> tuple[Json, list[Op]]:
    """Apply RFC 6902 ``ops`` to ``doc`` (in place); returns the new root and the inverse.

    On failure the document is restored and ``PatchRejected`` names the operation.
    ``copy_values=False`` inserts the patch's values themselves (for patches used once).
    """
    box = _Doc(doc)
    undo: list[list[Op]] = []
    fresh = clone if copy_values else _own
    for i, op in enumerate(ops):
        try:
            undo.append(_apply_op(box, op, fresh))
        except PatchRejected as err:
            _rollback(box, undo)
            where = op.get("path", "")
            raise PatchRejected(f"operation {i} ({op.get('op')} {where!r}): {err}") from None
    return box.root, [u for group in reversed(undo) for u in group]


def _rollback(box: _Doc, undo: list[list[Op]]) -> None:
    try:
        for group in reversed(undo):
            for op in group:
                _apply_op(box, op, _own)
    except PatchRejected as err:  # an inverse that does not apply is a bug, not bad input
        raise RuntimeError(f"could not roll back a rejected patch: {err}") from err
