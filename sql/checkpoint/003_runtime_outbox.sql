-- The checkpointer's own outbox gives way to the runtime's (event_outbox, created in this
-- schema by runtime/003_outbox.sql, which is applied before this file). What an old
-- worker committed but did not publish yet moves over in its order, with its msg_id and
-- headers, and the runtime's drain publishes it.
--
-- The lock first: a drain of an old worker that is publishing rows right now finishes
-- (and deletes them) before they are copied. Were one copied anyway, its re-publish
-- carries the same Nats-Msg-Id, which JetStream drops as a duplicate.
LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE;

INSERT INTO event_outbox (subject, msg_id, headers, data, created_at)
SELECT subject, msg_id, headers, data, created_at FROM outbox ORDER BY id;

DROP TABLE outbox;
