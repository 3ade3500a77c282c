-- postman-retry's own bookkeeping. The agency table is never touched by migrations.

-- One row per logical run. A run that did not finish (running/interrupted) is resumed by the next
-- `run`, so there is at most one unfinished run at a time.
CREATE TABLE postman_retry.runs (
    run_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status          text        NOT NULL CHECK (status IN ('running', 'interrupted', 'completed', 'failed')),
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    attempts        integer     NOT NULL DEFAULT 1,     -- how many processes worked on this run
    selection_done  boolean     NOT NULL DEFAULT false,
    scope           jsonb       NOT NULL,               -- filters and limits, so a resume keeps the same scope
    agency_table    text        NOT NULL,
    api_retry_calls bigint      NOT NULL DEFAULT 0,
    api_poll_calls  bigint      NOT NULL DEFAULT 0,
    api_rate_limited bigint     NOT NULL DEFAULT 0,
    last_error      text
);
CREATE UNIQUE INDEX runs_one_unfinished ON postman_retry.runs ((true)) WHERE status IN ('running', 'interrupted');

-- Rows in scope that were not selected, counted by campaign and reason.
CREATE TABLE postman_retry.skips (
    run_id      bigint  NOT NULL REFERENCES postman_retry.runs,
    campaign_id text    NOT NULL,
    reason      text    NOT NULL CHECK (reason IN ('otp', 'retry_limit', 'permanent_error', 'unknown_error_code', 'malformed')),
    count       bigint  NOT NULL,
    PRIMARY KEY (run_id, campaign_id, reason)
);

-- Malformed rows, named for the report (key and field; never the recipient).
CREATE TABLE postman_retry.malformed_rows (
    run_id  bigint NOT NULL REFERENCES postman_retry.runs,
    row_key text   NOT NULL,
    field   text   NOT NULL,
    problem text   NOT NULL,
    PRIMARY KEY (run_id, row_key, field)
);

-- The per-message journal: one row per message a run works (selected, or carried over as pending
-- from an earlier run). Every step is committed before the next one is taken:
--   selected -> intent (committed BEFORE the retry call) -> accepted (201 seen, polling) -> done.
-- An intent without an answer is settled by reading the message back from Postman.
CREATE TABLE postman_retry.journal (
    run_id            bigint      NOT NULL REFERENCES postman_retry.runs,
    message_id        text        NOT NULL,
    campaign_id       text        NOT NULL,
    batch_id          text,
    row_key           text        NOT NULL,
    recipient_masked  text        NOT NULL,
    row_created_at    timestamptz,
    origin            text        NOT NULL CHECK (origin IN ('selected', 'carried_over')),
    carried_from_run  bigint,
    superseded_by_run bigint,
    -- the agency row as the job last read or wrote it: the compare-and-set witness
    snap_status       text,
    snap_retry_count  integer,
    snap_error_code   text,
    snap_updated_at   timestamptz,
    state             text        NOT NULL CHECK (state IN ('selected', 'intent', 'accepted', 'done')),
    outcome           text CHECK (outcome IN ('retried', 'exhausted', 'not_found', 'reconciled',
                                              'batch_not_retryable', 'rejected', 'conflict')),
    result            text CHECK (result IN ('succeeded', 'failed', 'pending')),
    base_retry_count  integer,       -- the row's retry_count before this job's retry (outcome arithmetic)
    attempts_before   integer,       -- Postman's attempt count before our retry (lower bound)
    intent_at         timestamptz,
    accepted_at       timestamptz,
    poll_deadline     timestamptz,
    final_at          timestamptz,
    last_status       text,
    postman_retries   integer,
    newest_error      text,
    http_status       integer,
    postman_code      text,
    postman_message   text,
    unknown_status    text,          -- a latestStatus the job does not know (named in the report)
    -- what write-back writes (NULL = leave the column as it is) and how it went
    target_status     text,
    target_retry_count integer,
    target_error_code text,
    target_sets_error boolean NOT NULL DEFAULT false,
    write_state       text NOT NULL DEFAULT 'none' CHECK (write_state IN ('none', 'pending', 'written', 'conflict')),
    written_at        timestamptz,
    never_final       boolean NOT NULL DEFAULT false,
    PRIMARY KEY (run_id, message_id)
);
CREATE INDEX journal_pending ON postman_retry.journal (campaign_id)
    WHERE result = 'pending' AND superseded_by_run IS NULL AND never_final = false;
CREATE INDEX journal_work ON postman_retry.journal (run_id, state) WHERE state <> 'done';
