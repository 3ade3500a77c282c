-- When a whole-batch call was about to be sent. A restart that finds a batch call with no answer recorded
-- used to take it as possibly sent, or not, by guesswork: now its members wait for Postman's background
-- batch retry only when the call may have gone out, and a call answered with a 4xx (nothing retried) is
-- not waited for at all.
ALTER TABLE postman_retry.batch_calls ADD COLUMN sent_at timestamptz;
-- Calls recorded before this column existed may have gone out any time after their intent: a run resumed
-- across the upgrade waits for them as it would have.
UPDATE postman_retry.batch_calls SET sent_at = intent_at WHERE sent_at IS NULL;
