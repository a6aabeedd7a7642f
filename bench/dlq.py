#!/usr/bin/env python
"""Dead-letter listing benchmark: how long `engram dlq list` takes to read the DLQ.

    .venv/bin/python bench/dlq.py [--letters 5000] [--runs 3]

Starts the embedded nats-server (and PostgreSQL, unused) and, as the NATS admin, fills
the DLQ stream with --letters dead letters as a worker sends them (``DeadLetters.send_raw``:
headers, a chat event body, a tenant per letter among 10). Then it times, --runs times each,
alternating, the reading of every letter (``dlq_tool.scan``, what `engram dlq list` runs)
and the same with a --tenant filter, two ways:

  per-letter: one ``get_msg`` (``next_by_subj``) per letter, as the tool read before;
  batched:    ``dlq_read.messages``, an ephemeral consumer fetched in batches (now).

Both must return the same letters (sequence, time, headers, body). Prints the medians
and writes bench/results/dlq.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH, so a snapshot there wins

import nats  # noqa: E402
from nats.js import JetStreamContext  # noqa: E402
from nats.js.api import RawStreamMsg  # noqa: E402
from nats.js.errors import NotFoundError  # noqa: E402

from bench import _script  # noqa: E402
from bench._servers import Servers, fresh_streams  # noqa: E402

TENANTS = 10


@dataclass
class Config:
    letters: int
    runs: int
    data_dir: Path | None
    out: Path
    live_code: bool


async def per_letter(js: JetStreamContext, subject: str, _: Any) -> AsyncIterator[RawStreamMsg]:
    """The reading replaced: one request per letter."""
    from services.runtime.bus import DLQ

    sequence = 1
    while True:
        try:
            raw = await js.get_msg(DLQ.name, sequence, subject=subject, next=True)
        except NotFoundError:
            return
        sequence = (raw.seq or sequence) + 1
        yield raw


async def fill(js: JetStreamContext, count: int) -> None:
    from services.runtime.dlq import DeadKind, DeadLetters

    letters = DeadLetters(js, "ingest")
    for n in range(count):
        body = {
            "event_id": str(uuid.uuid4()),
            "tenant_id": f"tenant-{n % TENANTS}",
            "type": "chat.message.created",
            "payload": {"content": "x" * 200, "role": "wizard"},
        }
        await letters.send_raw(
            "chat.message.created",
            json.dumps(body).encode(),
            stream="CHAT",
            sequence=n + 1,
            deliveries=1,
            kind=DeadKind.invalid,
            reason="contract violation: payload.role: Input should be 'user' or 'assistant'",
        )


async def timed(work: Callable[[], Awaitable[list[Any]]]) -> tuple[float, list[Any]]:
    start = time.perf_counter()
    found = await work()
    return time.perf_counter() - start, found


async def measure(servers: Servers, cfg: Config) -> dict[str, Any]:
    from services.runtime import dlq_read, dlq_tool

    nc = await nats.connect(servers.urls["NATS_URL"])
    js = nc.jetstream()
    try:
        await fresh_streams(js)
        await fill(js, cfg.letters)
        everything = dlq_tool.Filters()
        one_tenant = dlq_tool.Filters(tenant="tenant-3")
        ways = {"per-letter": per_letter, "batched": dlq_read.messages}
        seconds: dict[str, list[float]] = {}
        found: dict[str, list[tuple[Any, ...]]] = {}
        for _ in range(cfg.runs):
            for way, reader in ways.items():
                dlq_read.messages = reader  # type: ignore[assignment]
                for label, filters in (("all", everything), ("tenant", one_tenant)):

                    async def listing(f: dlq_tool.Filters = filters) -> list[Any]:
                        return [x async for x in dlq_tool.scan(js, f)]

                    took, letters = await timed(listing)
                    seconds.setdefault(f"{way} {label}", []).append(took)
                    found[f"{way} {label}"] = [
                        (x.sequence, x.time, x.summary(), x.message.data) for x in letters
                    ]
        dlq_read.messages = ways["batched"]  # type: ignore[assignment]
    finally:
        await nc.close()
    same = all(found[f"per-letter {k}"] == found[f"batched {k}"] for k in ("all", "tenant"))
    medians = {k: statistics.median(v) for k, v in seconds.items()}
    return {
        "letters": cfg.letters,
        "listed": {k: len(v) for k, v in found.items()},
        "same_letters_both_ways": same,
        "seconds": seconds,
        "median_s": medians,
        "speedup": {
            k: medians[f"per-letter {k}"] / medians[f"batched {k}"] for k in ("all", "tenant")
        },
    }


def main(argv: list[str]) -> int:
    p = _script.parser(__doc__)
    p.add_argument("--letters", type=int, default=5000)
    p.add_argument("--runs", type=int, default=3)
    _script.add_run_options(p, out=_script.RESULTS / "dlq.json", out_help="results JSON")
    cfg = Config(**vars(p.parse_args(argv)))
    console = _script.console()
    done = _script.measure(__file__, argv, cfg, console, lambda s: measure(s, cfg))
    result = done.result
    for key, value in result["median_s"].items():
        console.print(f"{key:>18}: {value:7.3f} s  ({result['letters'] / value:,.0f} letters/s)")
    console.print(f"speedup: {result['speedup']}; same letters: {result['same_letters_both_ways']}")
    _script.write(cfg.out, {**_script.report_head("dlq", cfg, done), **result}, console)
    return 0 if result["same_letters_both_ways"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
