"""A message of a batch that is not acked: naked with a growing delay to be delivered
again, or, once it is invalid, poison or out of deliveries, dead-lettered and terminated."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from nats.aio.msg import Msg

from services.runtime.dlq import DeadKind, DeadLetters
from services.runtime.errors import describe, retry_delay
from services.runtime.telemetry import Stats
from services.runtime.tracing_events import EventSpans, Outcome

# The pipeline's logger: a dead letter is read among the batches it came from.
log = logging.getLogger("engram.pipeline")


class Settler:
    """Naks and dead letters for one consumer's pipeline, counted in the worker's stats and
    ended in the message's span when the worker traces."""

    def __init__(
        self,
        dead_letters: DeadLetters,
        stats: Stats,
        spans: EventSpans | None,
        *,
        max_deliver: int,
        base_s: float,
        max_s: float,
    ) -> None:
        self._dlq = dead_letters
        self._stats = stats
        self._spans = spans
        self._max_deliver = max_deliver
        self._base_s = base_s
        self._max_s = max_s

    async def retry(self, msg: Msg, reason: str) -> None:
        deliveries = msg.metadata.num_delivered
        if deliveries >= self._max_deliver:
            await self.dead(
                msg, DeadKind.exhausted, f"gave up after {deliveries} deliveries: {reason}"
            )
            return
        self._stats.retried += 1
        await msg.nak(delay=retry_delay(deliveries, self._base_s, self._max_s))
        self._settled(msg, Outcome.retried, reason)

    async def dead_all(self, invalid: Sequence[tuple[Msg, str]]) -> None:
        for msg, reason in invalid:
            await self.dead(msg, DeadKind.invalid, reason)

    async def dead(self, msg: Msg, kind: DeadKind, reason: str) -> None:
        try:
            trace = self._spans.headers(msg) if self._spans is not None else None
            await self._dlq.send(msg, kind, reason, trace)
        except Exception as exc:  # the DLQ is unreachable: keep the message, try later
            log.error("could not dead-letter %s (%s): %s", msg.subject, reason, describe(exc))
            await msg.nak(delay=self._max_s)
            self._settled(msg, Outcome.retried, f"the DLQ is unreachable: {describe(exc)}")
            return
        self._stats.dead += 1
        log.warning("dead-lettered %s as %s: %s", msg.subject, kind.value, reason)
        await msg.term()
        self._settled(msg, Outcome.dead_lettered, f"{kind.value}: {reason}")

    def _settled(self, msg: Msg, outcome: Outcome, reason: str = "") -> None:
        if self._spans is not None:
            self._spans.settle(msg, outcome, reason)
