"""The one error model of every query (core-NATS request/reply).

Every query's reply is a union discriminated by ``status``: the query's own result
(``status: "ok"``) or ``QueryError`` (``status: "error"``). ``answer_of`` builds that
union for a result model, as a ``RootModel`` (so ``engram schema`` publishes it as the
``<subject>.reply`` schema) with a ``TypeAdapter`` to read a reply (``ANSWER.validate_json``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import ConfigDict, Field

from contracts.envelope import Contract


def _status_required(schema: dict[str, Any]) -> None:
    """Every reply carries `status` (readers dispatch on it): required in the schema."""
    required = schema.setdefault("required", [])
    if "status" not in required:
        required.insert(0, "status")


REPLY_CONFIG = ConfigDict(**Contract.model_config, json_schema_extra=_status_required)


class ErrorCode(StrEnum):
    """Why a query was not answered; what a client should do is in the description."""

    invalid = "invalid"  # the request breaks its contract: fix it, do not retry
    not_found = "not_found"  # no such thing (state, version) in this tenant
    pruned = "pruned"  # it existed, but retention removed it
    too_large = "too_large"  # the answer does not fit in one NATS message: ask for less
    unavailable = "unavailable"  # cannot answer now (starting, database down): retry later
    internal = "internal"  # a bug: reported in the service's log


CODE_HELP = (
    "invalid: the request breaks its contract (fix it; do not retry); not_found: no such "
    "state or version in this tenant; pruned: removed by retention; too_large: the answer "
    "would not fit in one NATS message (see `hint` for what to ask instead); unavailable: "
    "the service cannot answer now (retry with backoff); internal: a bug, in the log."
)


class QueryError(Contract):
    """The reply of a query that could not be answered (every query, every service)."""

    model_config = REPLY_CONFIG

    status: Literal["error"] = Field(
        default="error",
        description="Always `error`: tells this reply from the query's result (`ok`).",
        examples=["error"],
    )
    code: ErrorCode = Field(description=CODE_HELP, examples=["not_found"])
    message: str = Field(
        description="What went wrong, for a human.",
        examples=["no state for user 'u-1', agent 'bot' in tenant 'acme'"],
    )
    hint: str | None = Field(
        default=None,
        description="What to ask instead, when there is something (e.g. for `too_large`).",
        examples=["ask for fewer partitions: partitions=['local']"],
    )
    detail: dict[str, Any] | None = Field(
        default=None,
        description="Machine-readable facts about the failure: for `invalid`, `errors` "
        "(each broken field's `loc` and `msg`); for `too_large`, `size` and `limit` in "
        "bytes and what else helps (e.g. `partition_bytes`, `fits`).",
        examples=[{"size": 2_200_000, "limit": 1_044_480}],
    )


ERROR_DISCRIMINATOR = Field(discriminator="status")


class Reply(Contract):
    """Base of every query's result: `status` is `ok` (and required in the schema)."""

    model_config = REPLY_CONFIG

    status: Literal["ok"] = Field(
        default="ok", description="Always `ok`: a result, not a `QueryError`.", examples=["ok"]
    )
