"""The NATS rights generated from the catalog: their shape, and the docs table."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.catalog import SERVICES
from services.runtime.bus import subject_matches
from services.runtime.nats_auth import (
    ADMIN,
    PRODUCER,
    catalog_rights,
    check_password,
    render_config,
    rights_table,
    with_user,
)

DOCS = Path(__file__).parents[2] / "docs" / "security.md"


def allowed(patterns: tuple[str, ...], subject: str) -> bool:
    return any(subject_matches(p, subject) for p in patterns)


def test_the_security_page_shows_the_rights_of_the_current_catalog() -> None:
    text = DOCS.read_text()
    table = text.split("<!-- nats-rights:start -->\n")[1].split("<!-- nats-rights:end -->")[0]
    assert table == rights_table(catalog_rights(SERVICES)), (
        "docs/security.md is stale: paste `engram nats-config --table` between its markers"
    )


def test_nobody_publishes_advisories_and_workers_only_their_own_durables() -> None:
    rights = catalog_rights(SERVICES)
    advisory = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.CHAT.ingest"
    for name, r in rights.items():
        assert not allowed(r.publish, advisory) or allowed(r.deny_publish, advisory), name
    for name in SERVICES.names:
        r = rights[name]
        assert not allowed(r.publish, "$JS.API.STREAM.DELETE.DLQ")
        assert not allowed(r.publish, "$JS.API.STREAM.PURGE.DLQ")
        assert not allowed(r.publish, "$JS.API.STREAM.CREATE.CHAT")
        assert not allowed(r.publish, "$JS.API.CONSUMER.DELETE.CHAT." + name)
        assert allowed(r.publish, f"dlq.{name}.chat.message.created")
        for other in SERVICES.names:
            if other != name:
                assert not allowed(r.publish, f"$JS.API.CONSUMER.MSG.NEXT.CHAT.{other}")
                assert not allowed(r.publish, f"$JS.API.CONSUMER.CREATE.CHAT.{other}")
                assert not allowed(r.publish, f"dlq.{other}.x")
                assert not allowed(r.subscribe, f"_INBOX_{other}.x")
        assert r.subscribe[0] == f"_INBOX_{name}.>"


def test_the_producer_publishes_upstream_events_and_queries_only() -> None:
    r = catalog_rights(SERVICES)[PRODUCER]
    assert allowed(r.publish, "chat.message.created")
    assert allowed(r.publish, "memory.consolidate")
    assert allowed(r.publish, "query.memory.search")
    for subject in ("dlq.ingest.x", "engram.embedding.ready", "$JS.API.STREAM.DELETE.DLQ"):
        assert not allowed(r.publish, subject)
    assert r.subscribe == ("_INBOX_producer.>",)


def test_config_needs_every_password_and_urls_carry_them() -> None:
    rights = catalog_rights(SERVICES)
    with pytest.raises(ValueError, match="no NATS password"):
        render_config(rights, {ADMIN: "x" * 16})
    config = render_config(rights, {name: "p" * 16 for name in rights})
    assert config.count("user: ") == len(rights)
    assert with_user("nats://old:pw@nats:4222", "ingest", "s3cret") == (
        "nats://engram_ingest:s3cret@nats:4222"
    )
    with pytest.raises(ValueError, match="16 characters"):
        check_password("ingest", "has/slash-and-is-long-enough")
