"""Dead letters: ``dlq.<service>.<original subject>``, original bytes, reason in headers."""

from __future__ import annotations

from enum import StrEnum

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.runtime.bus import DLQ

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
        headers = {
            HEADER_KIND: kind.value,
            # Header values are one line; the full reason stays readable.
            HEADER_REASON: " ".join(reason.split())[:MAX_REASON],
            HEADER_SUBJECT: msg.subject,
            HEADER_STREAM: meta.stream,
            HEADER_SEQUENCE: str(meta.sequence.stream),
            HEADER_DELIVERIES: str(meta.num_delivered),
            # A redelivered original dead-letters once, not twice.
            "Nats-Msg-Id": f"{self._service}:{meta.stream}:{meta.sequence.stream}",
        }
        await self._js.publish(self.subject_for(msg.subject), msg.data or b"",
                               headers=headers, stream=DLQ.name)
