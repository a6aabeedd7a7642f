"""Dead letters: ``dlq.<service>.<original subject>``, original bytes, reason in headers.

A dead letter whose headers and body would not fit in one NATS message (the server's
``max_payload``, less ``MARGIN``) keeps its body in the JetStream object store bucket
``engram-dlq-bodies`` instead, and the DLQ message carries only the headers and a
reference. ``dead_letter_body`` reads either form back and checks the digest. Why the
object store: it lives in NATS, so it works when PostgreSQL is down, which is exactly when
"exhausted" dead letters happen.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import Mapping
from enum import StrEnum
from typing import Protocol

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import ObjectMeta, ObjectMetaOptions, ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from services.runtime.bus import DLQ, BusNotReady, ConsumerSpec
from services.runtime.errors import describe
from services.runtime.sizes import headers_size, message_size, publish_checked
from services.runtime.trace_context import trace_of

log = logging.getLogger("engram.dlq")

HEADER_REASON = "Engram-Dlq-Reason"
HEADER_KIND = "Engram-Dlq-Kind"
HEADER_SUBJECT = "Engram-Original-Subject"
HEADER_STREAM = "Engram-Original-Stream"
HEADER_SEQUENCE = "Engram-Original-Sequence"
HEADER_DELIVERIES = "Engram-Deliveries"
# Where the original bytes are: "inline" (the body) or "object:<bucket>/<name>".
HEADER_BODY = "Engram-Dlq-Body"
HEADER_BODY_SIZE = "Engram-Dlq-Body-Size"
HEADER_BODY_DIGEST = "Engram-Dlq-Body-Digest"  # "SHA-256=<base64url>", as the object store
MAX_REASON = 2000
BODY_BUCKET = "engram-dlq-bodies"
# Room left under max_payload: a mirror or source of the DLQ stream adds its own header
# (Nats-Stream-Source) to every message it copies, and a replay adds Nats-Msg-Id.
MARGIN = 1024
# Chunks of a stored body; nats-py's default, smaller only on a server with a tiny limit.
CHUNK = 128 * 1024


class DeadLetterBodyError(Exception):
    """A dead letter's body cannot be read back whole (missing object, digest mismatch)."""


def body_digest(data: bytes) -> str:
    return "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()


class DeadKind(StrEnum):
    invalid = "invalid"  # breaks its contract; never retried
    poison = "poison"  # valid, but applying it fails for a reason retries cannot fix
    exhausted = "exhausted"  # still failing after max_deliver deliveries


class DeadLetters:
    def __init__(self, js: JetStreamContext, service: str) -> None:
        self._js = js
        self._nc: NatsClient = js._nc  # for max_payload, which the server sent on connect
        self._service = service
        self._bodies: ObjectStore | None = None

    def subject_for(self, original_subject: str) -> str:
        return f"dlq.{self._service}.{original_subject}"

    async def send(
        self, msg: Msg, kind: DeadKind, reason: str, trace: Mapping[str, str] | None = None
    ) -> None:
        """Publish and wait for the stream's ack, so the caller may then terminate the
        original. ``trace``: the ``traceparent`` of the event's span; without one, the
        original's own (``trace_of``)."""
        meta = msg.metadata
        await self.send_raw(
            msg.subject,
            msg.data or b"",
            stream=meta.stream,
            sequence=meta.sequence.stream,
            deliveries=meta.num_delivered,
            kind=kind,
            reason=reason,
            trace=trace or trace_of(msg.headers),
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
        trace: Mapping[str, str] | None = None,
    ) -> None:
        """Dead-letter ``data`` in full, whatever its size. Raises (never sends) when even
        the headers alone cannot fit; the caller keeps the original and retries later.
        ``trace``: the W3C trace context the letter carries (``trace_context.trace_of``):
        the span of the failed processing, or the original's own, so the letter, and a
        replay of it, stay in the event's trace (docs/operations.md, "Tracing")."""
        digest = body_digest(data)
        headers = {
            HEADER_KIND: kind.value,
            HEADER_REASON: "",
            HEADER_SUBJECT: subject,
            HEADER_STREAM: stream,
            HEADER_SEQUENCE: str(sequence),
            HEADER_DELIVERIES: str(deliveries),
            HEADER_BODY: "inline",
            HEADER_BODY_SIZE: str(len(data)),
            HEADER_BODY_DIGEST: digest,
            # A message dead-letters once, however often it is redelivered or reported.
            "Nats-Msg-Id": f"{self._service}:{stream}:{sequence}",
            # What js.publish(stream=DLQ) adds: here, so that its bytes are counted.
            "Nats-Expected-Stream": DLQ.name,
            **trace_of(trace),
        }
        limit = self._nc.max_payload - MARGIN
        # Header values are one line; the reason is cut so the headers can never be what
        # makes a dead letter too big (the body can always move out, the headers cannot).
        room = max(0, limit - headers_size(headers))
        one_line = " ".join(reason.split())[:MAX_REASON]
        headers[HEADER_REASON] = one_line.encode()[:room].decode(errors="ignore")
        if message_size(data, headers) > limit:
            name = f"{self._service}/{stream}/{sequence}/{hashlib.sha256(data).hexdigest()}"
            await self._keep_body(name, data, digest, subject)
            headers[HEADER_BODY] = f"object:{BODY_BUCKET}/{name}"
            data = b""
        await publish_checked(
            self._js,
            self.subject_for(subject),
            data,
            headers=headers,
            stream=DLQ.name,
            margin=MARGIN,
        )

    async def body_store(self) -> ObjectStore:
        """The bucket of big bodies, which the bus setup created (a worker may not create
        it): ``BusNotReady`` when it is missing."""
        if self._bodies is None:
            try:
                self._bodies = await self._js.object_store(BODY_BUCKET)
            except BucketNotFoundError:
                raise BusNotReady(
                    f"the dead-letter body bucket {BODY_BUCKET} does not exist: set the bus "
                    "up first (`engram migrate` with NATS_URL of the NATS admin user)"
                ) from None
        return self._bodies

    async def _keep_body(self, name: str, data: bytes, digest: str, subject: str) -> None:
        # The name holds service, stream, sequence and the SHA-256 of the bytes: a retried
        # dead letter finds its body already kept, and a stream re-created with its
        # sequences restarted can never overwrite another message's body.
        store = await self.body_store()
        try:
            info = await store.get_info(name)
            if info.digest == digest and info.size == len(data):
                return
        except ObjectNotFoundError:
            pass
        chunk = max(1, min(CHUNK, self._nc.max_payload - MARGIN))
        meta = ObjectMeta(
            name=name,
            description=f"dead letter of {self._service}: {subject}",
            options=ObjectMetaOptions(max_chunk_size=chunk),
        )
        await store.put(name, data, meta=meta)


async def ensure_body_store(js: JetStreamContext, replicas: int | None = None) -> ObjectStore:
    """Bind the bucket of dead-letter bodies, creating it (file storage, kept as long as
    the DLQ stream keeps its messages) when it does not exist yet. The bus setup's (an
    admin's) step. ``replicas``: as for the streams (``bus.ensure_streams``); None keeps
    what the bucket has."""
    try:
        store = await js.object_store(BODY_BUCKET)
    except BucketNotFoundError:
        config = ObjectStoreConfig(
            description="bodies of dead letters too big for one DLQ message",
            ttl=DLQ.max_age_s,
            storage=StorageType.FILE,
            replicas=replicas or 1,
        )
        return await js.create_object_store(BODY_BUCKET, config=config)
    # The bucket is a stream: scale it as the streams (nats-py's object store has no
    # update of its own).
    stream = f"OBJ_{BODY_BUCKET}"
    info = await js.stream_info(stream)
    if replicas and info.config.num_replicas != replicas:
        info.config.num_replicas = replicas
        await js.update_stream(info.config)
    return store


class Letter(Protocol):
    """A DLQ message as read back: a Msg from a consumer or a stream's get_msg."""

    @property
    def headers(self) -> Mapping[str, str] | None: ...

    @property
    def data(self) -> bytes | None: ...


async def dead_letter_body(js: JetStreamContext, letter: Letter, timeout_s: float = 30.0) -> bytes:
    """The original bytes of a dead letter, inline or kept in the object store, checked
    against the size and digest it was sent with (letters from before those headers
    existed are returned as they are)."""
    headers = letter.headers or {}
    where = headers.get(HEADER_BODY, "inline")
    if where == "inline":
        data = letter.data or b""
    elif where.startswith("object:") and "/" in where:
        bucket, name = where.removeprefix("object:").split("/", 1)
        try:
            store = await js.object_store(bucket)
            result = await asyncio.wait_for(store.get(name), timeout_s)
        except (BucketNotFoundError, ObjectNotFoundError) as exc:
            raise DeadLetterBodyError(f"body {where} is gone: {describe(exc)}") from exc
        data = result.data or b""
    else:
        raise DeadLetterBodyError(f"unknown body location {where!r}")
    size, digest = headers.get(HEADER_BODY_SIZE), headers.get(HEADER_BODY_DIGEST)
    if size is not None and int(size) != len(data):
        raise DeadLetterBodyError(f"body is {len(data)} bytes, the letter says {size}")
    if digest is not None and digest != body_digest(data):
        raise DeadLetterBodyError(f"body digest {body_digest(data)} is not {digest}")
    return data


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
                trace=trace_of(original.headers),  # no span of ours saw its last delivery
            )
        except Exception as exc:
            log.error("could not dead-letter after max deliveries: %s", describe(exc))

    return await nc.subscribe(
        f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{durable}",
        queue=durable,
        cb=on_advisory,
    )
