"""Reading, replaying and removing dead letters (`engram dlq`), as NATS's admin.

The DLQ stream is read in batches by a short-lived consumer that acks nothing
(``dlq_read.py``), so reading changes nothing the workers see. A replay re-publishes a letter's
original bytes to its original subject with ``Nats-Msg-Id: <tenant_id>:<event_id>`` (as
producers publish it, contracts.envelope.Envelope.msg_id): JetStream drops it within the
stream's duplicate window (2 min) of the original, and after that the worker's inbox
applies an event once per (tenant, event_id). A replay the stream drops as a duplicate
keeps its letter: the original it matched may be the very event that was dead-lettered.
The letter (and its body object, for a big one) is deleted only after the stream stored
the publish, so a replay that fails half-way leaves the letter to replay again.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError

from services.runtime import dlq, dlq_read
from services.runtime.bus import DLQ, subject_matches
from services.runtime.sizes import headers_size
from services.runtime.trace_context import trace_of

# Room for the Nats-Msg-Id header of a replay; a body bigger than max_payload less this
# is re-published without it (the worker's inbox still applies it once).
REPLAY_HEADER_ROOM = 512


@dataclass(frozen=True)
class Filters:
    """Which letters a command takes; None takes any."""

    service: str | None = None
    subject: str | None = None  # the original subject; NATS wildcards allowed
    kind: dlq.DeadKind | None = None
    tenant: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def stream_subject(self) -> str:
        return f"dlq.{self.service or '*'}.{self.subject or '>'}"


@dataclass(frozen=True)
class Event:
    """What a letter's original bytes say about themselves, when they parse as JSON."""

    event_id: str | None = None
    tenant_id: str | None = None
    parsed: object = None  # the JSON, or None when the bytes are not JSON


@dataclass(frozen=True)
class DeadLetter:
    sequence: int  # in the DLQ stream
    service: str
    subject: str  # where the original was published
    stream: str
    original_sequence: int | None
    kind: str
    reason: str
    deliveries: int | None
    time: datetime | None
    body_location: str  # "inline" or "object:<bucket>/<name>"
    body_size: int | None
    event: Event  # from the body; empty for a body in the object store not read yet
    message: RawStreamMsg = field(repr=False, compare=False)

    def summary(self) -> dict[str, object]:
        """The letter as `--json` prints it (no body)."""
        return {
            "sequence": self.sequence,
            "time": self.time.isoformat() if self.time else None,
            "service": self.service,
            "kind": self.kind,
            "reason": self.reason,
            "subject": self.subject,
            "stream": self.stream,
            "original_sequence": self.original_sequence,
            "deliveries": self.deliveries,
            "tenant_id": self.event.tenant_id,
            "event_id": self.event.event_id,
            "body": self.body_location,
            "body_size": self.body_size,
        }


def event_of(body: bytes) -> Event:
    try:
        parsed = json.loads(body)
    except ValueError:  # not UTF-8 or not JSON
        return Event()
    if not isinstance(parsed, dict):
        return Event(parsed=parsed)
    ids = [parsed.get("event_id"), parsed.get("tenant_id")]
    event_id, tenant_id = (value if isinstance(value, str) else None for value in ids)
    return Event(event_id, tenant_id, parsed)


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def letter_of(raw: RawStreamMsg, event: Event | None = None) -> DeadLetter:
    headers = raw.headers or {}
    subject = raw.subject or ""
    location = headers.get(dlq.HEADER_BODY, "inline")
    if event is None:
        event = event_of(raw.data or b"") if location == "inline" else Event()
    return DeadLetter(
        sequence=raw.seq or 0,
        service=subject.split(".")[1] if subject.count(".") >= 2 else "?",
        subject=headers.get(dlq.HEADER_SUBJECT, subject.split(".", 2)[-1]),
        stream=headers.get(dlq.HEADER_STREAM, ""),
        original_sequence=_int(headers.get(dlq.HEADER_SEQUENCE)),
        kind=headers.get(dlq.HEADER_KIND, "?"),
        reason=headers.get(dlq.HEADER_REASON, ""),
        deliveries=_int(headers.get(dlq.HEADER_DELIVERIES)),
        time=raw.time,
        body_location=location,
        body_size=_int(headers.get(dlq.HEADER_BODY_SIZE)),
        event=event,
        message=raw,
    )


def matches(letter: DeadLetter, filters: Filters) -> bool:
    """All but the tenant (which may need the body read first) and the service and
    subject (which the stream's subject filter applies)."""
    if filters.kind is not None and letter.kind != filters.kind.value:
        return False
    if letter.time is not None:
        if filters.since is not None and letter.time < filters.since:
            return False
        if filters.until is not None and letter.time > filters.until:
            return False
    return filters.subject is None or subject_matches(filters.subject, letter.subject)


async def with_body(js: JetStreamContext, letter: DeadLetter) -> tuple[DeadLetter, bytes]:
    """The letter with what its body says, and the body (``dlq.DeadLetterBodyError``
    when it cannot be read back whole)."""
    body = await dlq.dead_letter_body(js, letter.message)
    return letter_of(letter.message, event_of(body)), body


async def scan(js: JetStreamContext, filters: Filters) -> AsyncIterator[DeadLetter]:
    """The letters that pass ``filters``, oldest first."""
    # Closed at once when the scan ends early (its consumer is deleted then, not at GC).
    reading = dlq_read.messages(js, filters.stream_subject, filters.since)
    async with contextlib.aclosing(reading) as raws:
        async for raw in raws:
            letter = letter_of(raw)
            until, when = filters.until, letter.time
            if until is not None and when is not None and when > until:
                return  # a stream's messages are in time order
            if not matches(letter, filters):
                continue
            if filters.tenant is not None:
                if letter.body_location != "inline":
                    try:
                        letter, _ = await with_body(js, letter)
                    except dlq.DeadLetterBodyError:
                        continue
                if letter.event.tenant_id != filters.tenant:
                    continue
            yield letter


class NoSuchLetter(LookupError):
    pass


async def get(js: JetStreamContext, sequence: int) -> DeadLetter:
    try:
        raw = await js.get_msg(DLQ.name, sequence)
    except NotFoundError:
        raise NoSuchLetter(
            f"the DLQ stream holds no message {sequence} (`engram dlq list` shows them)"
        ) from None
    return letter_of(raw)


async def remove(js: JetStreamContext, letter: DeadLetter) -> None:
    """Delete the letter, then its body object (an object without its letter is only
    space; a letter without its object could never be replayed)."""
    await js.delete_msg(DLQ.name, letter.sequence)
    if letter.body_location.startswith("object:") and "/" in letter.body_location:
        bucket, name = letter.body_location.removeprefix("object:").split("/", 1)
        with contextlib.suppress(BucketNotFoundError, ObjectNotFoundError, NotFoundError):
            await (await js.object_store(bucket)).delete(name)


class Outcome(StrEnum):
    replayed = "replayed"  # stored again on its stream; the letter is gone
    # The stream dropped the publish: an event with the same Nats-Msg-Id is within its
    # duplicate window. That one may never have been applied (the worker dead-lettered
    # it), so the letter stays, to replay once the window has passed.
    held = "held"
    would_replay = "would replay"  # --dry-run
    skipped = "skipped"  # cannot be replayed safely; the letter stays


@dataclass(frozen=True)
class Replay:
    letter: DeadLetter
    outcome: Outcome
    detail: str = ""

    def summary(self) -> dict[str, object]:
        return {
            "sequence": self.letter.sequence,
            "subject": self.letter.subject,
            "tenant_id": self.letter.event.tenant_id,
            "event_id": self.letter.event.event_id,
            "outcome": self.outcome.value,
            "detail": self.detail,
        }


def replay_headers(max_payload: int, body: bytes, letter: DeadLetter) -> dict[str, str] | None:
    """``Nats-Msg-Id``, and the letter's trace context (so the replay's processing joins
    the trace of the delivery that failed), as far as they fit beside ``body``."""
    if len(body) + REPLAY_HEADER_ROOM > max_payload:
        return None
    headers = {"Nats-Msg-Id": f"{letter.event.tenant_id}:{letter.event.event_id}"}
    trace = trace_of(letter.message.headers)
    if len(body) + REPLAY_HEADER_ROOM + headers_size(trace) <= max_payload:
        headers |= trace
    return headers


async def replay(js: JetStreamContext, letter: DeadLetter, *, dry_run: bool = False) -> Replay:
    try:
        letter, body = await with_body(js, letter)
    except dlq.DeadLetterBodyError as exc:
        return Replay(letter, Outcome.skipped, str(exc))
    event = letter.event
    if event.event_id is None or event.tenant_id is None:
        # Without its ids nothing would keep a replay from applying twice, and a worker
        # would only dead-letter the same bytes again.
        return Replay(letter, Outcome.skipped, "its body has no event_id and tenant_id")
    if not letter.stream:
        return Replay(letter, Outcome.skipped, "it names no original stream")
    if dry_run:
        return Replay(letter, Outcome.would_replay, f"to {letter.subject}")
    headers = replay_headers(js._nc.max_payload, body, letter)
    ack = await js.publish(letter.subject, body, headers=headers, stream=letter.stream)
    if ack.duplicate:
        window = (await js.stream_info(letter.stream)).config.duplicate_window or 0
        return Replay(
            letter,
            Outcome.held,
            f"{letter.stream} dropped it as a duplicate: it saw this event id less than "
            f"{window:g} s ago (its duplicate window); replay again after that",
        )
    await remove(js, letter)
    return Replay(letter, Outcome.replayed, f"{letter.stream} sequence {ack.seq}")
