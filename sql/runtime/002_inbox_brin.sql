-- received_at only grows (it is each transaction's start time), so a BRIN index serves the
-- prune's range scan as well as the b-tree did, without a b-tree insert for every event.
DROP INDEX inbox_received_at;
CREATE INDEX inbox_received_at ON inbox USING brin (received_at);
