"""The streams of DESIGN.md and the durable pull consumers on them, declared explicitly.

JetStream's and FastStream's defaults are not ours: every stream sets its storage,
retention and duplicate window, and every consumer its ack policy, ack wait, max
deliver and in-flight limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

DAY_S = 86_400.0


@dataclass(frozen=True)
class Stream:
    name: str
    subjects: tuple[str, ...]
    max_age_s: float
    duplicate_window_s: float = 120.0
    # Whether upstream producers (chat services, agents, schedulers) publish its events;
    # engram's own streams (ENGRAM, DLQ) take messages from engram's workers only.
    upstream: bool = True

    def config(self, replicas: int = 1) -> StreamConfig:
        """Its config, stored on ``replicas`` servers of a cluster (1 on a single server)."""
        return StreamConfig(
            name=self.name,
            subjects=list(self.subjects),
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            max_age=self.max_age_s,
            duplicate_window=self.duplicate_window_s,
            allow_direct=True,
            num_replicas=replicas,
        )


CHAT = Stream(
    "CHAT",
    ("chat.conversation.*", "chat.message.*", "chat.file.*", "chat.session.*"),
    max_age_s=7 * DAY_S,
)
MEMORY = Stream(
    "MEMORY", ("memory.write", "memory.forget", "memory.consolidate"), max_age_s=7 * DAY_S
)
STATE = Stream("STATE", ("state.patch", "state.checkpoint", "state.restore"), max_age_s=7 * DAY_S)
# Context templates, put and deleted by agents and admin tools (contracts/context_templates).
CONTEXT = Stream("CONTEXT", ("context.template.*",), max_age_s=7 * DAY_S)
# Agents' knowledge sources and their documents, from agents, admin tools and connectors
# (contracts/knowledge; read by the embedder).
KNOWLEDGE = Stream("KNOWLEDGE", ("knowledge.source.*", "knowledge.document.*"), max_age_s=7 * DAY_S)
ENGRAM = Stream("ENGRAM", ("engram.>",), max_age_s=7 * DAY_S, upstream=False)
DLQ = Stream("DLQ", ("dlq.>",), max_age_s=30 * DAY_S, upstream=False)
STREAMS: tuple[Stream, ...] = (CHAT, MEMORY, STATE, CONTEXT, KNOWLEDGE, ENGRAM, DLQ)


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or (token != "*" and token != got[i]):
            return False
    return len(want) == len(got)


class NoStream(ValueError):
    """No stream stores the subject: publishing it could never be acknowledged."""


def stream_of(subject: str) -> Stream:
    """The stream that stores ``subject``; ``NoStream`` when none does."""
    for stream in STREAMS:
        if any(subject_matches(p, subject) for p in stream.subjects):
            return stream
    raise NoStream(f"no stream stores {subject!r}")


@dataclass(frozen=True)
class ConsumerSpec:
    """One service's durable pull consumer on one stream."""

    stream: Stream
    durable: str
    filter_subjects: tuple[str, ...]
    max_deliver: int
    ack_wait_s: float
    max_ack_pending: int

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            name=self.durable,
            description=f"engram {self.durable} on {self.stream.name}",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_deliver=self.max_deliver,
            # No `backoff`: JetStream would use its steps as the ack wait of each delivery
            # and redeliver batches still in flight. Retries nak with their own delay.
            max_ack_pending=self.max_ack_pending,
            filter_subjects=list(self.filter_subjects),
        )


class BusNotReady(RuntimeError):
    """A stream (or bucket) a worker needs does not exist: the bus was not set up."""


async def ensure_streams(
    js: JetStreamContext, streams: tuple[Stream, ...] = STREAMS, replicas: int | None = None
) -> None:
    """Create or update each stream to its declared config (idempotent). An admin's step
    (``engram migrate``, ``bus_setup.py``): workers have no right to it.

    ``replicas`` None keeps an existing stream's replica count (1 for a new one), so that a
    later setup run without the setting never scales a cluster's streams down to one copy."""
    for stream in streams:
        try:
            info = await js.stream_info(stream.name)
        except NotFoundError:
            await js.add_stream(stream.config(replicas or 1))
        else:
            await js.update_stream(stream.config(replicas or info.config.num_replicas or 1))


async def require_streams(js: JetStreamContext, streams: Iterable[Stream]) -> None:
    """Raise ``BusNotReady`` naming the first of ``streams`` that does not exist. A worker
    never creates a stream (it may not: least privilege); it says what is missing and
    exits, so its supervisor restarts it once an admin set the bus up."""
    for stream in streams:
        try:
            await js.stream_info(stream.name)
        except NotFoundError:
            raise BusNotReady(
                f"stream {stream.name} does not exist: set the bus up first "
                "(`engram migrate` with NATS_URL of the NATS admin user)"
            ) from None


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> None:
    """Create the durable consumer, or update it in place when its settings changed
    (JetStream's consumer create is create-or-update for an existing durable)."""
    await js.add_consumer(spec.stream.name, spec.config())
