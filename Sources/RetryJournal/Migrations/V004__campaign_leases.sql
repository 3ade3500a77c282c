-- `run --worker`: several processes share one run. Each campaign's rate budget is leased to exactly
-- one worker at a time, so no two processes ever send for the same campaign and its limit holds.
-- A worker renews its leases with heartbeats; a lease whose holder stopped renewing expires, and
-- another worker takes it over and resumes the campaign from the journal. Every take raises the
-- lease's epoch; a worker's journal writes check (in their own transaction) that the lease still
-- has the epoch it took, so a worker that lost its lease can change nothing.

CREATE TABLE postman_retry.campaign_leases (
    run_id       bigint      NOT NULL REFERENCES postman_retry.runs,
    campaign_id  text        NOT NULL,
    worker_id    text,                               -- NULL: free to take
    epoch        bigint      NOT NULL DEFAULT 0,     -- raised by every take (the fencing token)
    acquired_at  timestamptz,
    heartbeat_at timestamptz,
    expires_at   timestamptz,                        -- after this, another worker may take the lease
    takeovers    integer     NOT NULL DEFAULT 0,     -- leases taken from a worker that stopped renewing
    done         boolean     NOT NULL DEFAULT false, -- every message of the campaign is settled
    PRIMARY KEY (run_id, campaign_id)
);
