-- A write-back the agency table refused: a CHECK, an enum or domain, a varchar too short for a new
-- Postman code, a trigger. One refused row used to roll back the write-back of every settled message in
-- the same flush, and stop every run with exit 1. Now that row is left as it is, its entry keeps its
-- outcome with write_state 'refused' and PostgreSQL's message in write_error, and the report names it.
ALTER TABLE postman_retry.journal DROP CONSTRAINT journal_write_state_check;
ALTER TABLE postman_retry.journal ADD CONSTRAINT journal_write_state_check
    CHECK (write_state IN ('none', 'pending', 'written', 'conflict', 'refused'));
ALTER TABLE postman_retry.journal ADD COLUMN write_error text;
