-- The reference agency table (CONTRACT.md section 2). For demos, tests and agencies starting fresh;
-- the job never creates or alters an agency's own table.
CREATE TABLE IF NOT EXISTS outbound_messages (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id   text        NOT NULL,
    message_id    text        NOT NULL UNIQUE,   -- Postman's message id
    batch_id      text,                          -- NULL for single sends
    recipient     text        NOT NULL,
    is_otp        boolean     NOT NULL DEFAULT false,
    status        text        NOT NULL,          -- last known Postman latestStatus
    retry_count   integer     NOT NULL DEFAULT 0 CHECK (retry_count BETWEEN 0 AND 3),
    error_code    text,                          -- last delivery error code, if any
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
