"""The full-text half of knowledge search finds its words through the GIN index, under
the tenant walls (issue 16).

Under a row-level security policy PostgreSQL checks the policy before a condition whose
operator is not leakproof, and ``@@`` is not: a full-text search run under a policy
reads every chunk of the tenant to test it. These tests count the chunk rows the
service's own full-text statement fetches (``pg_stat_xact_user_tables``, this session's
counters) and check that the tenant walls still hold."""

from __future__ import annotations

from uuid import uuid4

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient

from contracts.embedding import KnowledgeSearchRequest, SearchMode
from services.embedder.queries import search_scope
from services.embedder.repo_search import Candidate, scope_search, text_candidates
from tests import factories as f
from tests.conftest import Env
from tests.connected.embedder_fixtures import Running, search, settled
from tests.helpers import publish

pytestmark = pytest.mark.connected
pytest_plugins = ["tests.connected.embedder_fixtures"]

# Chunks of the tenant without the word: a tenant of the size where it matters, with words
# spread like real text's (a few hundred chunks, or chunks that all hold the same words,
# are cheaper to read whole by the planner's estimates, and it may rightly do so). Written
# directly, as the bench seeds them (bench/context_seed.py): 20,000 through the bus and
# the model would take minutes; full text needs no vector.
FILLER = 20_000
SEED_FILLER = """
    WITH s AS (
        INSERT INTO embedder.sources (source_type, source_id, tenant_id, conversation_id,
                                      agent_id, source_at, content_hash, text_at, event_id)
        SELECT 'message', gen_random_uuid(), $2, gen_random_uuid(), 'filler', now(),
               repeat('0', 64), now(), gen_random_uuid()
          FROM generate_series(1, $1)
        RETURNING source_id, conversation_id, source_at)
    INSERT INTO embedder.chunks (tenant_id, source_type, source_id, conversation_id, agent_id,
                                 source_at, chunk_index, text, content_hash, tokens)
    SELECT $2, 'message', source_id, conversation_id, 'filler', source_at, 0,
           -- words of a vocabulary of 5,000, as in real text: each in few chunks
           (SELECT string_agg('w' || floor(random() * 5000)::int, ' ')
              FROM generate_series(1, 12) WHERE s.source_id IS NOT NULL),
           repeat('0', 64), 16
      FROM s"""
RARE = "We stopped at the zebra crossing by the old tram depot."
FETCHED = """SELECT coalesce(sum(idx_tup_fetch + seq_tup_read), 0)
               FROM pg_stat_xact_user_tables WHERE relid = 'embedder.chunks'::regclass"""


async def text_side(
    embedder: Running, env: Env, tenant: str, text: str
) -> tuple[list[Candidate], int]:
    """The service's full-text statement for ``text``, as the service scopes it, on the
    worker's own login; and how many chunk rows it fetched."""
    settings = embedder.active.settings
    scope = search_scope(
        settings, KnowledgeSearchRequest(tenant_id=tenant, text=text, mode=SearchMode.text)
    )
    conn = await asyncpg.connect(env.login("embedder"))
    try:
        async with conn.transaction(readonly=True):
            await scope_search(
                conn,
                tenant,
                reader=scope.matcher or scope.reader,
                ef_search=scope.ef_search,
                max_scan_tuples=scope.max_scan_tuples,
            )
            # the counters hold this session's unflushed counts: compare before and after
            before = await conn.fetchval(FETCHED)
            found = await text_candidates(
                conn, scope, query_text=text, max_matches=settings.text_max_matches
            )
            return found, await conn.fetchval(FETCHED) - before
    finally:
        await conn.close()


async def test_a_rare_word_fetches_its_chunks_not_the_whole_tenant(
    embedder: Running, env: Env, nc: NatsClient, db: asyncpg.Connection
) -> None:
    cid = uuid4()
    rare = f.message(cid, content=RARE)
    await publish(nc, rare)
    await settled(db, 1)
    await db.execute(SEED_FILLER, FILLER, "acme")
    await db.execute("ANALYZE embedder.chunks")
    found, fetched = await text_side(embedder, env, "acme", "the zebra crossing")
    assert [c.source_id for c in found] == [rare.payload.message_id]
    # its one chunk, matched then read back (under a policy: all 20,001, once per tier)
    assert fetched <= 4, fetched
    # and the same through query.knowledge.search, as a client sees it
    hits = (await search(nc, "acme", "the zebra crossing", mode="text")).hits
    assert [h.source.source_id for h in hits] == [rare.payload.message_id]


async def test_the_matching_keeps_to_the_scoped_tenant(
    embedder: Running, env: Env, nc: NatsClient, db: asyncpg.Connection
) -> None:
    mine, theirs = f.message(uuid4(), content=RARE), f.message(uuid4(), content=RARE, tenant="b")
    await publish(nc, mine, theirs)
    await settled(db, 2)
    found, _ = await text_side(embedder, env, "acme", "zebra")
    assert [c.source_id for c in found] == [mine.payload.message_id]
    found, _ = await text_side(embedder, env, "b", "zebra")
    assert [c.source_id for c in found] == [theirs.payload.message_id]
    # the cross-tenant role matches only for one named tenant: unset, '*' or a list is refused
    for scope in ("", "*", "acme,b"):
        async with db.transaction():
            await db.execute("SET LOCAL ROLE engram_embedder_all_tenants")
            await db.execute("SELECT set_config('engram.tenant_id', $1, true)", scope)
            with pytest.raises(asyncpg.RaiseError, match="one tenant"):
                await db.fetch(
                    "SELECT * FROM embedder.rank_text('zebra', '{message,file}', NULL, NULL,"
                    " NULL, NULL, 10, 100, NULL)"
                )
