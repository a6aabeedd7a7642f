-- Applied inside every service's schema (search_path is set by the runner).
-- Idempotency keys are per tenant (DESIGN.md): two tenants may choose the same event_id,
-- so the inbox is keyed by (event_id, tenant_id) instead of event_id alone.
--
-- Existing rows: the inbox never stored the tenant, and nothing in this schema can give it
-- back for every row (most effects do not keep the event id, and the audit inbox holds
-- record ids, not event ids), so they get the tenant '*', which no real tenant can be
-- (contracts.envelope.TENANT_PATTERN starts with a letter or digit; audit's chains without
-- a tenant are '_unknown' and '_malformed'). The claim (services/runtime/inbox.py) treats a
-- '*' row as having claimed its event_id for every tenant: a redelivery or a producer's
-- retry of an event applied before this migration is still dropped (under any header),
-- as it was, rather than applied a second time. The rows are dropped by the prune like any
-- other (received_at older than the streams' max age), after which no '*' row is left:
-- the claim never writes one.
--
-- The default only fills the existing rows (PostgreSQL 11+ stores it in the catalog, no
-- rewrite); it is dropped at once, so a claim that forgets its tenant fails, never lands
-- in '*'.
--
-- Upgrade: a worker of the previous release claims with ON CONFLICT (event_id), which has
-- no unique index to match after this file and fails every batch: stop the workers (scale
-- them to zero), migrate, then start the new release; no event is lost (unacked messages
-- wait in their streams).
ALTER TABLE inbox ADD COLUMN tenant_id text NOT NULL DEFAULT '*';
ALTER TABLE inbox ALTER COLUMN tenant_id DROP DEFAULT;
-- event_id first: it is what makes a key selective (a tenant has many events), and a
-- lookup by event_id alone (the checkpointer's ordering gate) still uses the index.
ALTER TABLE inbox DROP CONSTRAINT inbox_pkey;
ALTER TABLE inbox ADD PRIMARY KEY (event_id, tenant_id);
-- The claim's look-up for a '*' row of each new event: an index of those rows alone, which
-- is empty once they are pruned (a look-up then reads one page), and which new claims
-- never write.
CREATE INDEX inbox_any_tenant ON inbox (event_id) WHERE tenant_id = '*';
COMMENT ON COLUMN inbox.tenant_id IS
    'The event''s tenant; with event_id, the key. ''*'': a row from before the inbox had '
    'the tenant (migration runtime/004), which holds its event_id for every tenant until '
    'it is pruned.';
