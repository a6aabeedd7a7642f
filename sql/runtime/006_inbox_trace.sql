-- Applied inside every service's schema (search_path is set by the runner).
-- The trace of each applied event, for the background jobs that announce its results
-- later (the embedder's engram.embedding.ready once the model ran, memory's consolidation
-- summary): their outbox rows name the event's span as their parent, so that work stays
-- in the trace that started it (services/runtime/outbox.py). Written only while the
-- worker traces; NULL otherwise (a NULL column costs a bit in the row's null bitmap).
ALTER TABLE inbox ADD COLUMN traceparent text;
COMMENT ON COLUMN inbox.traceparent IS
    'W3C traceparent of the span that applied the event, when the worker traced it: the '
    'parent of what background jobs announce later with this event as their cause.';
