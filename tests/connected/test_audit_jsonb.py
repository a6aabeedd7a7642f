"""Payloads survive PostgreSQL's jsonb exactly as hashed: verify recomputes every digest
from what the database gives back."""

from __future__ import annotations

import json
import random
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from services.audit.logic import build_record
from services.audit.redaction import RedactionPolicy
from tests.conftest import Env
from tests.connected.audit_fixtures import append_now, verify

pytestmark = pytest.mark.connected

TRICKY: list[Any] = [
    0,
    -0.0,
    1.0,
    1.5,
    0.1 + 0.2,
    1e-7,
    5e-324,
    1e16,
    1.5e300,
    sys.float_info.max,
    -1e-300,
    2**64,
    -(10**40),
    123456789.123456789,
    "",
    'é🌍\u2028\n"\\',
    [],
    {},
    {"": None},
    {"b": 1, "a": [True, False, None], "ä": {"z": 2.50}},
    "\\u0000 as text",
    1e15 + 0.5,
]


def random_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return rng.choice(
            [
                rng.randint(-(2**70), 2**70),
                rng.uniform(-1e6, 1e6),
                rng.random() * 10 ** rng.randint(-30, 30),
                "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(0, 8))),
                None,
                True,
            ]
        )
    if roll < 0.75:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {f"k{rng.randint(0, 99)}": random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


async def test_jsonb_round_trip_keeps_every_digest(env: Env) -> None:
    rng = random.Random(11)
    payloads = TRICKY + [random_json(rng) for _ in range(300)]
    records = [
        build_record(
            stream="STATE",
            stream_seq=i + 1,
            subject="state.patch",
            data=json.dumps({"tenant_id": "acme", "payload": p, "extra": p}).encode(),
            headers={"h": "é"},
            received_at=datetime.now(UTC),
            policy=RedactionPolicy(),
        )
        for i, p in enumerate(payloads)
    ]
    assert all(r.tenant_id == "acme" for r in records)
    await append_now(env, records)
    result = await verify(env)
    assert result.ok, result.breaks
    assert result.rows == len(payloads)
