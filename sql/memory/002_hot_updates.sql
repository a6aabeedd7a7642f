-- Decay, access counts and superseding rewrite a memory's row without touching its text or
-- vector. Measured on 100k memories (bench/memory.py): such updates were never HOT, so each
-- re-inserted the row into the HNSW index, and the decay step took 146 of a job's 317 s.
--
-- * The importance index goes: an indexed column that changes rules out a HOT update
--   (nothing reads memories by importance alone; search ranks its candidates itself).
-- * Vectors are stored out of line (TOAST) whatever their size, and rows get free space on
--   their page: an updated row, a few hundred bytes without its vector, fits beside the
--   old one, and its vector is not copied (the unchanged TOAST pointer is kept).
DROP INDEX memories_importance;
ALTER TABLE memories SET (fillfactor = 80, toast_tuple_target = 128);
ALTER TABLE memories ALTER COLUMN embedding SET STORAGE EXTERNAL;
ALTER TABLE memories ALTER COLUMN content SET STORAGE EXTERNAL;
