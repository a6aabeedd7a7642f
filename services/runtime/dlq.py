"""Dead letters: ``dlq.<service>.<original subject>``, original bytes, reason in headers."""

from __future__ import annotations

import json
import logging
from enum import StrEnum

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from services.runtime.bus import DLQ, ConsumerSpec
from services.runtime.errors import describe

log = logging.getLogger("engram.dlq")

HEADER_REASON = "Engram-Dlq-Reason"
HEADER_KIND = "Engram-Dlq-Kind"
HEADER_SUBJECT = "Engram-Original-Subject"
HEADER_STREAM = "Engram-Original-Stream"
HEADER_SEQUENCE = "Engram-Original-Sequence"
HEADER_DELIVERIES = "Engram-Deliveries"
MAX_REASON = 2000


class DeadKind(StrEnum):
    invalid = "invalid"  # breaks its contract; never retried
    poison = "poison"  # valid, but applying it fails for a reason retries cannot fix
    exhausted = "exhausted"  # still failing after max_deliver deliveries


class DeadLetters:
    def __init__(self, js: JetStreamContext, service: str) -> None:
        self._js = js
        self._service = service

    def subject_for(self, original_subject: str) -> str:
        return f"dlq.{self._service}.{original_subject}"

    async def send(self, msg: Msg, kind: DeadKind, reason: str) -> None:
        """Publish and wait for the stream's ack, so the caller may then terminate the original."""
        meta = msg.metadata
        await self.send_raw(
            msg.subject,
            msg.data or b"",
            stream=meta.stream,
            sequence=meta.sequence.stream,
            deliveries=meta.num_delivered,
            kind=kind,
            reason=reason,
        )

    async def send_raw(
        self,
        subject: str,
        data: bytes,
        *,
        stream: str,
        sequence: int,
        deliveries: int,
        kind: DeadKind,
        reason: str,
    ) -> None:
        headers = {
            HEADER_KIND: kind.value,
            # Header values are one line; the full reason stays readable.
            HEADER_REASON: " ".join(reason.split())[:MAX_REASON],
            HEADER_SUBJECT: subject,
            HEADER_STREAM: stream,
            HEADER_SEQUENCE: str(sequence),
            HEADER_DELIVERIES: str(deliveries),
            # A message dead-letters once, however often it is redelivered or reported.
            "Nats-Msg-Id": f"{self._service}:{stream}:{sequence}",
        }
        await self._js.publish(self.subject_for(subject), data, headers=headers, stream=DLQ.name)


async def watch_max_deliveries(
    nc: NatsClient, spec: ConsumerSpec, dead_letters: DeadLetters
) -> Subscription:
    """Dead-letter what JetStream gave up on without our code seeing the last delivery.

    A message whose every delivery crashed or stalled its worker is never acked, so no
    handler could send it to the DLQ; JetStream reports it in an advisory instead. One
    replica of the service handles each advisory (queue group).
    """
    stream, durable = spec.stream.name, spec.durable
    js = nc.jetstream()

    async def on_advisory(advisory: Msg) -> None:
        try:
            info = json.loads(advisory.data)
            original = await js.get_msg(stream, info["stream_seq"])
            await dead_letters.send_raw(
                original.subject or "",
                original.data or b"",
                stream=stream,
                sequence=info["stream_seq"],
                deliveries=info.get("deliveries", 0),
                kind=DeadKind.exhausted,
                reason="delivered max_deliver times without an ack (its worker died or "
                "stalled on every delivery)",
            )
        except Exception as exc:
            log.error("could not dead-letter after max deliveries: %s", describe(exc))

    return await nc.subscribe(
        f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{durable}",
        queue=durable,
        cb=on_advisory,
    )
