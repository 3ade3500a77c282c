-- What the report needs that the journal lacks: how many requests each campaign sent in each whole
-- second (and how many of them Postman answered 429), and the rate limit each campaign ran under.
-- Written by the campaign workers with their periodic journal writes, in the same transaction as
-- the run's API call counts, so the per-second sums equal runs.api_*_calls.

CREATE TABLE postman_retry.request_seconds (
    run_id       bigint      NOT NULL REFERENCES postman_retry.runs,
    campaign_id  text        NOT NULL,
    second       timestamptz NOT NULL,               -- the whole second (UTC) the requests were sent in
    requests     integer     NOT NULL DEFAULT 0,     -- every request sent, 429s included
    rate_limited integer     NOT NULL DEFAULT 0,     -- answers 429, by the second the answer came
    PRIMARY KEY (run_id, campaign_id, second)
);

-- The configured requests-per-second limit of each campaign in a run (a resumed run keeps the
-- limit of its latest process).
CREATE TABLE postman_retry.run_campaigns (
    run_id      bigint  NOT NULL REFERENCES postman_retry.runs,
    campaign_id text    NOT NULL,
    rate_limit  integer NOT NULL,
    PRIMARY KEY (run_id, campaign_id)
);
