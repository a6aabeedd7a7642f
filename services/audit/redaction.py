"""Redaction: JSON paths of a payload stored as the SHA-256 of their value, not the value.

A path is ``payload.<key>.<key>...``; ``*`` matches every key of an object or element of an
array, a number an array index. A redacted value becomes ``{"redacted_sha256": "<hex>"}``:
the SHA-256 of a string's UTF-8 bytes, or of the canonical JSON of any other value, so the
trail proves what was said (whoever holds the text can show it matches) without keeping it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.audit import canonical as c

Path = tuple[str, ...]


def parse_path(text: str) -> Path:
    """``payload.content`` -> ("content",); ``*`` matches every key or array element."""
    parts = tuple(text.strip().split("."))
    if parts[0] != "payload" or any(not p for p in parts):
        raise ValueError(
            f"redaction path {text!r} must start with 'payload' and name keys separated "
            "by dots, e.g. payload.content or payload.items.*.text"
        )
    return parts[1:]


@dataclass(frozen=True)
class RedactionPolicy:
    everywhere: tuple[Path, ...] = ()
    by_tenant: Mapping[str, tuple[Path, ...]] | None = None

    @classmethod
    def parse(
        cls, everywhere: Sequence[str], by_tenant: Mapping[str, Sequence[str]]
    ) -> RedactionPolicy:
        return cls(
            tuple(parse_path(p) for p in everywhere),
            {t: tuple(parse_path(p) for p in paths) for t, paths in by_tenant.items()},
        )

    def paths_for(self, tenant: str) -> tuple[Path, ...]:
        extra = self.by_tenant.get(tenant, ()) if self.by_tenant else ()
        return self.everywhere + extra if extra else self.everywhere


def redacted_marker(value: Any) -> dict[str, str]:
    """What replaces a redacted value: the SHA-256 of a string's UTF-8 bytes, or of the
    canonical JSON of any other value, so a holder of the original can prove it."""
    data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else c.canonical(value)
    return {"redacted_sha256": c.sha256(data).hex()}


def redact(value: Any, path: Path, where: str = "payload") -> tuple[Any, list[str]]:
    """A copy of ``value`` with what ``path`` names replaced (copy on write), and the
    concrete paths replaced. Absent keys and nulls are left alone."""
    if not path:
        return (value, []) if value is None else (redacted_marker(value), [where])
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        keys: Sequence[Any] = list(value) if head == "*" else ([head] if head in value else [])
    elif isinstance(value, list):
        if head == "*":
            keys = range(len(value))
        else:
            keys = [int(head)] if head.isdigit() and int(head) < len(value) else []
    else:
        return value, []
    copy: Any = None
    hits: list[str] = []
    for key in keys:
        new, found = redact(value[key], rest, f"{where}.{key}")
        if found:
            if copy is None:
                copy = dict(value) if isinstance(value, dict) else list(value)
            copy[key] = new
            hits += found
    return (value if copy is None else copy), hits
