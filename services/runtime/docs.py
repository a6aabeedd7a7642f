"""AsyncAPI for the stream consumers, from the same declarations the worker runs.

The pull loops are engram's own (natural batching, per-event outcomes), so FastStream
does not see them; this builds a never-connected broker that declares each consumed
subject with its contract, which FastStream's generator turns into the document.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from faststream.nats import JStream, NatsBroker, PullSub

if TYPE_CHECKING:
    from services.runtime.service import Consumes


def describe_consumers(service: str, consumes: Sequence[Consumes]) -> NatsBroker:
    broker = NatsBroker(name=f"engram-{service}")
    for item in consumes:
        stream = JStream(item.stream.name, subjects=list(item.stream.subjects), declare=False)
        for contract in item.contracts:
            subject = contract.model_fields["type"].default

            async def handler(event: Any) -> None:  # documentation only; never started
                return None

            handler.__annotations__["event"] = contract
            broker.subscriber(
                subject,
                stream=stream,
                durable=service,
                pull_sub=PullSub(),
                title=f"{service}:{subject}",
                description=(contract.__doc__ or "").strip() or None,
            )(handler)
    broker.publisher(
        f"dlq.{service}.>",
        stream=JStream("DLQ", declare=False),
        title=f"dlq.{service}",
        description="Dead letters: original bytes; reason, kind, original "
        "subject, stream and sequence in Engram-* headers.",
    )
    return broker
