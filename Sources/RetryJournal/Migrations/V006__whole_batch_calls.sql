-- Whole-batch retries (issue 15): one row per `POST …/batch/{batchId}/retry`, committed in the same
-- transaction as the intents of all its members (each with Postman's attempt count). The key allows one
-- call per batch ever: a batch whose call's outcome was unknown is never called whole again, in any run;
-- what its members still need goes by single retries.
CREATE TABLE postman_retry.batch_calls (
    campaign_id  text        NOT NULL,
    batch_id     text        NOT NULL,
    run_id       bigint      NOT NULL REFERENCES postman_retry.runs,
    members      integer     NOT NULL,
    intent_at    timestamptz NOT NULL DEFAULT now(),
    answered_at  timestamptz,
    http_status  integer,
    postman_code text,
    PRIMARY KEY (campaign_id, batch_id)
);
ALTER TABLE postman_retry.runs ADD COLUMN api_batch_retry_calls bigint NOT NULL DEFAULT 0;
