-- When a holder of the run last died (its row deleted after it expired). A holder that gave its row up
-- itself had finished sending before it did, so the next run waits only the contract's second before its
-- first request; one that died may have handed requests to its HTTP client that still reach Postman
-- `request_timeout` later, and a run taking the hold soon after waits that out too (RunHolder). The
-- takeover may have been done by a process that has since ended (a run that took over and finished
-- early), so it is remembered here rather than only by whoever deleted the row; a trigger stamps every
-- such delete, whichever binary or person ran it.
ALTER TABLE postman_retry.run_gate ADD COLUMN last_takeover_at timestamptz;
-- A holder there now is an older binary's, which may itself have just taken a dead holder's place, with
-- no trigger to say so: the next take waits the longer margin.
UPDATE postman_retry.run_gate SET last_takeover_at = clock_timestamp()
WHERE EXISTS (SELECT 1 FROM postman_retry.run_holders);

CREATE FUNCTION postman_retry.stamp_takeover() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE postman_retry.run_gate SET last_takeover_at = clock_timestamp() WHERE id = 1;
    RETURN NULL;
END
$$;

-- Rows deleted once expired: a process that stopped renewing (killed, cut off) or gave its row up late.
CREATE TRIGGER run_holder_taken_over AFTER DELETE ON postman_retry.run_holders
    FOR EACH ROW WHEN (OLD.expires_at < clock_timestamp()) EXECUTE FUNCTION postman_retry.stamp_takeover();
