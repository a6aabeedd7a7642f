"""What `engram status` and `engram dev` show: consumer lag, DLQ depth, rows per table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
from nats.js.errors import NotFoundError
from rich.table import Table

from services.runtime.bus import DLQ, STREAMS
from services.runtime.bus_setup import connect


@dataclass
class Status:
    consumers: list[tuple[str, str, int, int, int]] = field(default_factory=list)
    # (stream, consumer, pending, in flight, redelivered)
    streams: dict[str, int] = field(default_factory=dict)  # stream -> messages stored
    dead: dict[str, int] = field(default_factory=dict)  # service -> DLQ messages
    rows: dict[str, int] = field(default_factory=dict)  # schema.table -> rows


async def collect(
    nats_url: str, database_url: str, schemas: Sequence[str], *, exact: bool = False
) -> Status:
    status = Status()
    nc = await connect(nats_url, connect_timeout=3, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        for stream in STREAMS:
            try:
                info = await js.stream_info(
                    stream.name, subjects_filter="dlq.>" if stream is DLQ else None
                )
            except NotFoundError:
                continue
            status.streams[stream.name] = info.state.messages
            if stream is DLQ:
                for subject, count in (info.state.subjects or {}).items():
                    service = subject.split(".")[1]
                    status.dead[service] = status.dead.get(service, 0) + count
            for consumer in await js.consumers_info(stream.name):
                status.consumers.append(
                    (
                        stream.name,
                        consumer.name,
                        consumer.num_pending or 0,
                        consumer.num_ack_pending or 0,
                        consumer.num_redelivered or 0,
                    )
                )
    finally:
        await nc.close()
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        tables = await conn.fetch(
            "SELECT schemaname, relname, n_live_tup FROM pg_stat_user_tables "
            "WHERE schemaname = ANY($1) AND relname <> 'schema_migrations' "
            "ORDER BY schemaname, relname",
            list(schemas),
        )
        for t in tables:
            name = f"{t['schemaname']}.{t['relname']}"
            status.rows[name] = (
                await conn.fetchval(f'SELECT count(*) FROM "{t[0]}"."{t[1]}"')
                if exact
                else t["n_live_tup"]
            )
    finally:
        await conn.close()
    return status


def render(status: Status) -> list[Table]:
    lag = Table(title="consumers", title_justify="left")
    for column in ("stream", "consumer", "pending", "in flight", "redelivered", "dead letters"):
        lag.add_column(column, justify="left" if column in ("stream", "consumer") else "right")
    for stream, name, pending, in_flight, redelivered in status.consumers:
        lag.add_row(
            stream,
            name,
            str(pending),
            str(in_flight),
            str(redelivered),
            str(status.dead.get(name, 0)),
        )
    rows = Table(title="rows", title_justify="left")
    rows.add_column("table")
    rows.add_column("rows", justify="right")
    for name, count in status.rows.items():
        rows.add_row(name, str(count))
    return [lag, rows]
