-- The partial index the selection reads through: only failed rows, in the order they are worked
-- (created_at, then key). Small, because failures are a small share of all messages.
CREATE INDEX IF NOT EXISTS outbound_messages_failed_idx
    ON outbound_messages (created_at, id)
    WHERE status = 'failure';
