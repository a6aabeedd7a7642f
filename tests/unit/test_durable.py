"""Pure parts of re-creating a missing consumer: where it delivers from, and which fetch
failures make the worker ask whether its consumer is gone."""

from __future__ import annotations

from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError, ServiceUnavailableError

from services.runtime.bus import CHAT, ConsumerSpec
from services.runtime.durable import may_mean_missing, with_start
from services.runtime.fetch import PullStatusError

SPEC = ConsumerSpec(CHAT, "ingest", CHAT.subjects, max_deliver=5, ack_wait_s=30, max_ack_pending=9)


def test_a_known_floor_delivers_from_the_next_sequence() -> None:
    config = with_start(SPEC.config(), 42)
    assert config.deliver_policy == DeliverPolicy.BY_START_SEQUENCE
    assert config.opt_start_seq == 42
    # Everything else is the declared consumer.
    assert (config.durable_name, config.max_deliver, config.ack_wait) == ("ingest", 5, 30)
    assert config.filter_subjects == list(CHAT.subjects)


def test_no_floor_delivers_the_whole_stream_as_a_first_start() -> None:
    config = with_start(with_start(SPEC.config(), 42), None)
    assert config.deliver_policy == DeliverPolicy.ALL
    assert config.opt_start_seq is None
    assert config == SPEC.config()


def test_which_fetch_failures_may_mean_the_consumer_is_gone() -> None:
    assert may_mean_missing(PullStatusError("409", "Consumer Deleted"))
    assert may_mean_missing(PullStatusError("503", ""))
    assert may_mean_missing(NotFoundError(code=404, err_code=10014))
    # Connection trouble: nats-py reconnects, asking the server would fail the same way.
    assert not may_mean_missing(TimeoutError())
    assert not may_mean_missing(ConnectionResetError())
    assert not may_mean_missing(ServiceUnavailableError(code=503))
