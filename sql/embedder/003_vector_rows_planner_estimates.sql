-- Row-level security stays on chunks (every search reply is built from chunks rows, so a
-- row of another tenant can never be returned) but leaves chunk_vectors: its policy's
-- condition made the planner underestimate a tenant's rows a hundredfold and pick an
-- exact sort over a large tenant instead of the HNSW index. Searches still filter
-- chunk_vectors by tenant_id in SQL, and join chunks under its policy.
DROP POLICY tenant_scope ON chunk_vectors;
ALTER TABLE chunk_vectors DISABLE ROW LEVEL SECURITY;
