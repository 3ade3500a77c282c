-- Who may work the job's runs now (CONTRACT.md section 7): one plain `run` alone, or any number of
-- `run --worker` processes together. Held as rows, not as session advisory locks, so that it holds
-- through a transaction-pooling PgBouncer or a managed proxy too, where a session lock is taken on
-- whichever pooled server connection ran the statement (two runs both "got" it, and a lock left on a
-- pooled connection locked every later run out).
--
-- A holder renews its row with a heartbeat several times a second; a row not renewed by
-- `expires_at` belongs to a process that died, and the next run deletes it and takes its place. A
-- holder sends nothing more once its last heartbeat is older than its guard window, which is shorter
-- than the time its row takes to expire, so an old and a new holder never send together.
-- Journal writes check their holder's row (`FOR KEY SHARE`) in their own transaction: a process
-- whose row was taken away can change nothing.

CREATE TABLE postman_retry.run_holders (
    holder_id    text        PRIMARY KEY,            -- unique per process
    worker_id    text        NOT NULL,               -- what logs and the lease table call it
    exclusive    boolean     NOT NULL,               -- a plain run; false: a `run --worker`
    acquired_at  timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    beats        bigint      NOT NULL DEFAULT 0,     -- raised by every heartbeat: a waiting run sees it move
    expires_at   timestamptz NOT NULL
);

-- One row, locked by every take so that two runs starting at once are judged one after the other;
-- it also says which worker is opening (and selecting) the shared run.
CREATE TABLE postman_retry.run_gate (
    id           integer     PRIMARY KEY CHECK (id = 1),
    setup_holder text
);
INSERT INTO postman_retry.run_gate (id) VALUES (1);
