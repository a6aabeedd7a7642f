"""Pure SQL builders of the LangGraph store (query.store.batch): the WHERE clauses of a
search's value filter and of a namespace listing's prefix / suffix, with their
parameters numbered after the caller's. No value is ever spliced into SQL text: keys,
labels and values are parameters; only operators from a fixed map are."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

WILDCARD = "*"
# $ne is IS DISTINCT FROM so that an item without the field is "not equal" (as LangGraph's
# InMemoryStore compares None != value).
OPERATORS = {
    "$eq": "=",
    "$ne": "IS DISTINCT FROM",
    "$gt": ">",
    "$gte": ">=",
    "$lt": "<",
    "$lte": "<=",
}


class FilterError(ValueError):
    """A filter the store does not understand (answered ``invalid``)."""


@dataclass
class Where:
    """SQL conditions and their parameters, numbered from ``first`` ($first, ...)."""

    first: int
    conditions: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def param(self, value: Any) -> str:
        self.params.append(value)
        return f"${self.first + len(self.params) - 1}"

    def sql(self) -> str:
        return "".join(f" AND {c}" for c in self.conditions)


def value_filter(where: Where, filters: Mapping[str, Any] | None, column: str = "value") -> None:
    """Top-level fields of the JSON value: equal to a value, or compared by operators
    (jsonb comparison: numbers numerically, strings by collation, types never mixed)."""
    for name, wanted in (filters or {}).items():
        if isinstance(wanted, dict) and wanted and all(str(k).startswith("$") for k in wanted):
            for op, operand in wanted.items():
                if op not in OPERATORS:
                    raise FilterError(f"unknown filter operator {op!r} on {name!r}")
                where.conditions.append(
                    f"({column} -> {where.param(name)}) {OPERATORS[op]} "
                    f"{where.param(operand)}::jsonb"
                )
        else:
            where.conditions.append(
                f"({column} -> {where.param(name)}) = {where.param(wanted)}::jsonb"
            )


def namespace_prefix(where: Where, prefix: Sequence[str], column: str = "namespace") -> None:
    """Whole labels from the start; '*' matches any one label."""
    if not prefix:
        return
    where.conditions.append(f"cardinality({column}) >= {len(prefix)}")
    for i, label in enumerate(prefix, start=1):
        if label != WILDCARD:
            where.conditions.append(f"{column}[{i}] = {where.param(label)}")


def namespace_suffix(where: Where, suffix: Sequence[str], column: str = "namespace") -> None:
    """Whole labels at the end; '*' matches any one label."""
    if not suffix:
        return
    n = len(suffix)
    where.conditions.append(f"cardinality({column}) >= {n}")
    for i, label in enumerate(suffix):
        if label != WILDCARD:
            where.conditions.append(
                f"{column}[cardinality({column}) - {n - 1 - i}] = {where.param(label)}"
            )


def exact_prefix(where: Where, prefix: Sequence[str], column: str = "namespace") -> None:
    """A search's namespace prefix (no wildcards): a slice compare, plus a lower bound the
    primary key's btree can range-scan from (every namespace that starts with ``prefix``
    sorts at or after it)."""
    if not prefix:
        return
    p = where.param(list(prefix))
    where.conditions.append(f"{column} >= {p}::text[]")
    where.conditions.append(f"{column}[1:{len(prefix)}] = {p}::text[]")
