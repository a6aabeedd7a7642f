"""The audit writer's decoder and batch step: thin glue between the pipeline and logic/repo."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from uuid import UUID

from nats.aio.msg import Msg

from services.audit import repo
from services.audit.logic import UNREADABLE, build_record, raw_record
from services.audit.record import AuditRecord
from services.audit.redaction import RedactionPolicy
from services.runtime.db import Connection
from services.runtime.errors import describe, is_transient
from services.runtime.pipeline import ApplyBatch, Decoder

log = logging.getLogger("engram.audit")


def record_decoder(policy: RedactionPolicy, *, keep_raw: bool) -> Decoder[AuditRecord]:
    """Reads every message as a record. It never raises (not even InvalidEvent): a message
    that is malformed for every other service is exactly what an audit trail must hold."""

    def decode(msg: Msg) -> AuditRecord:
        data = msg.data or b""
        try:
            meta = msg.metadata
        except Exception as exc:  # not a JetStream delivery: no stream position to key on
            log.exception("no stream metadata on %s; recording its bytes", msg.subject)
            return raw_record(
                stream=UNREADABLE,
                stream_seq=0,
                subject=msg.subject,
                data=data,
                received_at=datetime.now(UTC),
                reason=f"not read: {describe(exc)}",
                keep_raw=keep_raw,
                id_salt=msg.reply or "",
            )
        stream, seq, at = meta.stream, meta.sequence.stream, meta.timestamp
        try:
            return build_record(
                stream=stream,
                stream_seq=seq,
                subject=msg.subject,
                data=data,
                headers=msg.headers,
                received_at=at,
                policy=policy,
                keep_raw=keep_raw,
            )
        except Exception as exc:  # a bug here must not stop the stream: keep the bytes,
            # under the message's own stream position, so a redelivery is the same record
            log.exception("could not read %s; recording its bytes", msg.subject)
            return raw_record(
                stream=stream,
                stream_seq=seq,
                subject=msg.subject,
                data=data,
                received_at=at,
                reason=f"not read: {describe(exc)}",
                keep_raw=keep_raw,
            )

    return decode


def chain_appender(partitions: repo.Partitions) -> ApplyBatch[AuditRecord]:
    async def apply(conn: Connection, records: Sequence[AuditRecord]) -> Mapping[UUID, str]:
        if len(records) > 1:
            # Before any tenant lock: creating a partition waits for inserters to commit.
            await partitions.ensure(conn)
            await repo.append(conn, records)
            return {}
        # Alone (the pipeline replays a failed batch one record per transaction): a failure
        # that is not transient is retried later, with the growing delay, instead of being
        # dead-lettered at once. It is a missing grant or table more likely than a bad
        # record, and the DLQ is a stream this writer records too: dead-lettering every
        # record would feed it its own failures.
        try:
            async with conn.transaction():  # a savepoint: the transaction stays usable
                await partitions.ensure(conn)
                await repo.append(conn, records)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.error("cannot record %s yet: %s", records[0].subject, describe(exc))
            return {records[0].event_id: f"not recorded: {describe(exc)}"}
        return {}

    return apply
