"""What `engram status` and `engram dev` show: per durable consumer its lag, the age of
its oldest pending message, its dead letters and whether workers are pulling from it;
each service's facts (the embedder's model); rows per table.

Whether a worker is alive is read from JetStream, not from the workers' ports (which a
status command cannot find in a cluster): a running worker always keeps a pull request
open on its durable (``num_waiting``) or has just been delivered to (``last_active``). A
dead letter belongs to the consumer of its service on the stream of its original subject
(``dlq.<service>.<original subject>``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo
from nats.js.errors import NotFoundError
from rich.table import Table

from services.runtime.bus import DLQ, STREAMS, NoStream, stream_of
from services.runtime.cli_connect import open_nats, open_postgres
from services.runtime.spec import StatusFact

# A consumer delivered to within this long has a worker, even if no pull is waiting now.
ACTIVE_WINDOW_S = 30.0


@dataclass(frozen=True)
class ConsumerStatus:
    stream: str
    consumer: str
    pending: int  # not delivered yet
    in_flight: int  # delivered, not acked
    redelivered: int
    dead_letters: int
    oldest_pending_age_s: float | None  # the first message after the ack floor
    pulls_waiting: int  # open pull requests: about one per idle worker
    last_active_age_s: float | None  # since the last delivery

    @property
    def alive(self) -> bool:
        recent = self.last_active_age_s is not None and self.last_active_age_s < ACTIVE_WINDOW_S
        return self.pulls_waiting > 0 or recent


@dataclass
class Status:
    consumers: list[ConsumerStatus] = field(default_factory=list)
    streams: dict[str, int] = field(default_factory=dict)  # stream -> messages stored
    dead: dict[str, int] = field(default_factory=dict)  # service -> DLQ messages
    facts: dict[str, dict[str, str | None]] = field(default_factory=dict)  # service -> label
    rows: dict[str, int] = field(default_factory=dict)  # schema.table -> rows

    def document(self) -> dict[str, object]:
        """What `engram status --json` prints."""
        return {
            "consumers": [{**asdict(c), "alive": c.alive} for c in self.consumers],
            "streams": self.streams,
            "dead_letters": self.dead,
            "services": self.facts,
            "rows": self.rows,
        }


def _age_s(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else max(0.0, (now - moment).total_seconds())


async def oldest_pending(js: JetStreamContext, info: ConsumerInfo) -> datetime | None:
    """When the first message after the consumer's ack floor was stored (acks past the
    floor, out of order, are not looked at: an upper bound of the oldest's age)."""
    if not (info.num_pending or info.num_ack_pending):
        return None
    floor = info.ack_floor.stream_seq if info.ack_floor and info.ack_floor.stream_seq else 0
    config = info.config
    subjects = config.filter_subjects or [config.filter_subject or ">"]
    times = []
    for subject in subjects:
        try:
            message = await js.get_msg(info.stream_name, floor + 1, subject=subject, next=True)
        except NotFoundError:
            continue
        times.append(message.time)
    return min((t for t in times if t is not None), default=None)


def dead_by_consumer(subjects: Mapping[str, int]) -> dict[tuple[str, str], int]:
    """(stream, service) -> dead letters, from the DLQ's message count per subject."""
    found: dict[tuple[str, str], int] = {}
    for subject, count in subjects.items():
        parts = subject.split(".", 2)
        if len(parts) < 3:
            continue
        try:
            stream = stream_of(parts[2]).name
        except NoStream:
            continue
        key = (stream, parts[1])
        found[key] = found.get(key, 0) + count
    return found


async def read_bus(js: JetStreamContext, status: Status) -> None:
    now = datetime.now(UTC)
    dead: dict[tuple[str, str], int] = {}
    try:
        info = await js.stream_info(DLQ.name, subjects_filter="dlq.>")
        for subject, count in (info.state.subjects or {}).items():
            service = subject.split(".")[1]
            status.dead[service] = status.dead.get(service, 0) + count
        dead = dead_by_consumer(info.state.subjects or {})
    except NotFoundError:
        pass
    for stream in STREAMS:
        try:
            status.streams[stream.name] = (await js.stream_info(stream.name)).state.messages
        except NotFoundError:
            continue
        for consumer in await js.consumers_info(stream.name):
            delivered = consumer.delivered.last_active if consumer.delivered else None
            status.consumers.append(
                ConsumerStatus(
                    stream=stream.name,
                    consumer=consumer.name,
                    pending=consumer.num_pending or 0,
                    in_flight=consumer.num_ack_pending or 0,
                    redelivered=consumer.num_redelivered or 0,
                    dead_letters=dead.get((stream.name, consumer.name), 0),
                    oldest_pending_age_s=_age_s(await oldest_pending(js, consumer), now),
                    pulls_waiting=consumer.num_waiting or 0,
                    last_active_age_s=_age_s(delivered, now),
                )
            )


async def collect(
    nats_url: str,
    database_url: str,
    schemas: Sequence[str],
    *,
    exact: bool = False,
    facts: Mapping[str, Sequence[StatusFact]] | None = None,
    timeout_s: float = 5.0,
) -> Status:
    status = Status()
    nc = await open_nats(nats_url, timeout_s)
    try:
        await read_bus(nc.jetstream(), status)
    finally:
        await nc.close()
    conn = await open_postgres(database_url, timeout_s)
    try:
        for service, service_facts in (facts or {}).items():
            status.facts[service] = {}
            for fact in service_facts:
                value = await conn.fetchval(fact.sql)
                status.facts[service][fact.label] = None if value is None else str(value)
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


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def render(status: Status) -> list[Table]:
    lag = Table(title="consumers", title_justify="left")
    columns = ("stream", "consumer", "pending", "oldest", "in flight", "redelivered")
    for column in (*columns, "dead letters", "workers"):
        lag.add_column(column, justify="left" if column in ("stream", "consumer") else "right")
    for c in status.consumers:
        workers = f"pulling ({c.pulls_waiting})" if c.pulls_waiting else "active"
        lag.add_row(
            c.stream,
            c.consumer,
            str(c.pending),
            _age(c.oldest_pending_age_s),
            str(c.in_flight),
            str(c.redelivered),
            str(c.dead_letters),
            workers if c.alive else "[red]none[/]",
        )
    tables = [lag]
    shown = {s: f for s, f in status.facts.items() if f}
    if shown:
        services = Table(title="services", title_justify="left")
        services.add_column("service")
        services.add_column("fact")
        services.add_column("value")
        for service, values in shown.items():
            for label, value in values.items():
                services.add_row(service, label, value or "-")
        tables.append(services)
    rows = Table(title="rows", title_justify="left")
    rows.add_column("table")
    rows.add_column("rows", justify="right")
    for name, count in status.rows.items():
        rows.add_row(name, str(count))
    return [*tables, rows]
