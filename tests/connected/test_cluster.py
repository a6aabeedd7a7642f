"""A node of a three-node JetStream cluster is killed (``kill -9``) — the leader of the
CHAT stream, or a node that only follows it — while a producer publishes a steady stream of
chat events and the ingest and audit workers consume it; the node is restarted. Nothing
acknowledged is lost or stored twice (issue 13).

The streams are set up with three replicas by the admin's bus setup, as `engram migrate`
does with ``ENGRAM_STREAM_REPLICAS=3``. The producer and both workers are given every node
(NATS_URL with three servers), the killed node first, so that each of them is connected to
it and must fail over; the producer retries a publish that was not acknowledged, with the
same ``Nats-Msg-Id``, as a producer should. The figures (time without a leader, retries)
are printed with the test's result.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import asyncpg
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from contracts.envelope import Envelope
from services.catalog import SERVICES
from services.runtime import nats_auth
from services.runtime.bus_setup import connect, setup_bus
from services.runtime.worker import Worker
from tests import factories as f
from tests.conftest import Env
from tests.connected.audit_fixtures import *  # noqa: F403
from tests.connected.cluster_fixtures import NatsCluster
from tests.helpers import eventually

pytestmark = pytest.mark.connected

N_EVENTS = 3_000
CONVERSATIONS = 10
KILL_AFTER = N_EVENTS // 3  # events acknowledged before the node dies
# A message in flight at the kill comes back after the ack wait: short, to keep the test
# short; deliveries as in production (10), which a failover must not spend.
WORKER = {"ack_wait_s": 5.0, "max_deliver": 10, "nats_randomize": False}
RunWorker = Callable[..., AbstractAsyncContextManager[Worker]]


@dataclass
class Figures:
    published: int = 0
    retries: int = 0  # publishes not acknowledged in time, sent again
    duplicates: int = 0  # acks saying JetStream already had it (a retry of a stored one)
    killed_at: float = 0.0
    leaderless_s: float | None = None  # the leader's kill .. a new leader of CHAT is known
    publish_gap_s: float | None = None  # kill .. the first publish acknowledged again
    caught_up_s: float | None = None  # restart .. the restarted replica is current


@pytest.fixture
def cluster(env: Env, tmp_path: Path) -> Iterator[NatsCluster]:
    rights = nats_auth.catalog_rights(SERVICES)
    nodes = NatsCluster.of(tmp_path / "cluster", rights, env.servers.stack.passwords)
    nodes.start()
    yield nodes
    nodes.stop()


async def set_up_r3(cluster: NatsCluster) -> None:
    """The admin's bus setup with three replicas, once the cluster has elected its meta
    leader (until then JetStream answers nothing or 'temporarily unavailable')."""
    deadline = time.monotonic() + 30
    while True:
        try:
            await setup_bus(cluster.url(nats_auth.ADMIN), replicas=3)
            return
        except (TimeoutError, nats.errors.Error):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def leader_of(js: JetStreamContext, stream: str = "CHAT") -> str | None:
    try:
        info = await js.stream_info(stream)
    except (TimeoutError, nats.errors.Error):
        return None
    return info.cluster.leader if info.cluster else None


async def publish_steadily(js: JetStreamContext, events: list[Envelope], figures: Figures) -> None:
    """Publish each event until JetStream acknowledges it, retrying with the same
    Nats-Msg-Id (the event's): a retry of an event that was stored after all is refused
    as a duplicate within the stream's duplicate window."""
    for event in events:
        data, headers = event.model_dump_json().encode(), event.headers()
        while True:
            try:
                ack = await js.publish(event.type, data, headers=headers, timeout=1.0)
                break
            except (TimeoutError, nats.errors.Error):
                figures.retries += 1
                await asyncio.sleep(0.05)
        figures.duplicates += bool(ack.duplicate)
        figures.published += 1
        if figures.killed_at and figures.publish_gap_s is None:
            figures.publish_gap_s = time.monotonic() - figures.killed_at


async def kill_and_restart(
    cluster: NatsCluster, js: JetStreamContext, old: str, leader: str, figures: Figures
) -> str:
    """kill -9 the node ``old``; once CHAT has a leader that is not it (a new one when
    ``old`` led), restart it and wait until its replica of CHAT is current again. The
    leader then."""
    cluster.node(old).kill()
    figures.killed_at = time.monotonic()
    new = await eventually(lambda: leader_of(js), lambda n: n not in (None, old), timeout=30)
    if old == leader:
        figures.leaderless_s = time.monotonic() - figures.killed_at
    await asyncio.sleep(1.0)  # the producer publishes to the surviving nodes meanwhile
    restarted = time.monotonic()
    cluster.node(old).start()
    await asyncio.to_thread(cluster.node(old).wait_listening)

    async def current() -> bool:
        info = await js.stream_info("CHAT")
        replicas = info.cluster.replicas if info.cluster else None
        return any(p.name == old and p.current for p in replicas or [])

    await eventually(current, timeout=30, interval=0.2)
    figures.caught_up_s = time.monotonic() - restarted
    assert new is not None
    return new


async def harness_beside(cluster: NatsCluster, victim: str) -> tuple[NatsClient, str, str]:
    """The admin's client, on a node that will survive (the harness's own view must not
    fail over), the node to kill (``victim``: "leader" of CHAT, or a "follower") and the
    node leading CHAT."""
    admin = await connect(cluster.url(nats_auth.ADMIN), dont_randomize=True)
    try:
        info = await admin.jetstream().stream_info("CHAT")
    finally:
        await admin.close()
    assert info.config.num_replicas == 3
    leader = info.cluster.leader if info.cluster else None
    assert leader is not None
    followers = [n.name for n in cluster.nodes if n.name != leader]
    old = leader if victim == "leader" else followers[1]
    survivor = followers[0]
    admin = await connect(cluster.url(nats_auth.ADMIN, first=survivor), dont_randomize=True)
    return admin, old, leader


async def all_applied(db: asyncpg.Connection, count: int) -> None:
    for query in (
        "SELECT count(*) FROM ingest.inbox",
        "SELECT count(*) FROM audit.events WHERE stream = 'CHAT'",
    ):

        async def rows(query: str = query) -> int:
            return int(await db.fetchval(query))

        await eventually(rows, lambda n: n >= count, timeout=60)
    await asyncio.sleep(1.0)  # anything delivered again would land now


async def assert_exactly_once(
    db: asyncpg.Connection, js: JetStreamContext, events: list[Envelope]
) -> None:
    ids = {e.event_id for e in events}
    stored = await js.stream_info("CHAT")
    assert stored.state.messages == len(events)  # no retried publish stored twice
    inbox = await db.fetch("SELECT event_id, count(*) AS n FROM ingest.inbox GROUP BY 1")
    assert {r["event_id"] for r in inbox} == ids and {r["n"] for r in inbox} == {1}
    messages = await db.fetchval("SELECT count(*) FROM ingest.messages")
    assert messages == N_EVENTS
    trail = await db.fetch(
        "SELECT event_id, count(*) AS n FROM audit.events WHERE stream = 'CHAT' GROUP BY 1"
    )
    assert {r["event_id"] for r in trail} == ids and {r["n"] for r in trail} == {1}
    assert (await js.stream_info("DLQ")).state.messages == 0


@pytest.mark.parametrize("victim", ["leader", "follower"])
async def test_a_node_killed_loses_and_duplicates_nothing(
    victim: str,
    cluster: NatsCluster,
    *,
    db: asyncpg.Connection,
    run_ingest: RunWorker,
    run_audit: RunWorker,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await set_up_r3(cluster)
    admin, old, leader = await harness_beside(cluster, victim)
    cids = [uuid4() for _ in range(CONVERSATIONS)]
    events: list[Envelope] = [f.conversation(cid) for cid in cids]
    events += [f.message(cids[i % CONVERSATIONS], content=f"m{i}") for i in range(N_EVENTS)]
    before, after = events[: CONVERSATIONS + KILL_AFTER], events[CONVERSATIONS + KILL_AFTER :]
    figures = Figures()
    producer = await connect(cluster.url(nats_auth.PRODUCER, first=old), dont_randomize=True)
    try:
        async with (
            run_ingest(**WORKER, nats_url=cluster.url("ingest", first=old)) as ingest,
            run_audit(**WORKER, nats_url=cluster.url("audit", first=old)) as audit,
        ):
            # Each was given the leader's node first, in order: it is there, and must fail over.
            clients = {"ingest": ingest.supervisor.nc, "audit": audit.supervisor.nc}
            connected = {"producer": producer, **{w: nc for w, nc in clients.items() if nc}}
            for who, nc in connected.items():
                assert nc.connected_url is not None
                assert nc.connected_url.port == cluster.node(old).port, who
            await publish_steadily(producer.jetstream(), before, figures)
            publishing = asyncio.create_task(publish_steadily(producer.jetstream(), after, figures))
            # A short API timeout: the time without a leader is measured in tenths of seconds.
            new = await kill_and_restart(
                cluster, admin.jetstream(timeout=0.5), old, leader, figures
            )
            await publishing
            await all_applied(db, len(events))
            reconnects = {who: nc.stats["reconnects"] for who, nc in connected.items()}
            dead = ingest.stats.dead + audit.stats.dead
        with capsys.disabled():
            print(
                f"\ncluster: the CHAT {victim} {old} killed after {len(before)} of "
                f"{len(events)} events, leader {leader} then {new}; without a leader "
                f"{figures.leaderless_s or 0:.2f} s, "
                f"first publish acknowledged again after {figures.publish_gap_s:.2f} s, "
                f"{figures.retries} publish retries ({figures.duplicates} refused as "
                f"duplicates), restarted node current after {figures.caught_up_s:.2f} s; "
                f"reconnects {reconnects}"
            )
        assert new != old and (victim == "follower" or figures.leaderless_s is not None)
        assert len(connected) == 3 and all(n >= 1 for n in reconnects.values())
        assert figures.published == len(events) and dead == 0
        await assert_exactly_once(db, admin.jetstream(), events)
    finally:
        await producer.close()
        await admin.close()
