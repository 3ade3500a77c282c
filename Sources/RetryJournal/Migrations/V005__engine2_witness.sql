-- Engine 2: the witness of a retry is Postman's own attempt count, learnt before the call (a list page
-- or a read) and recorded with the intent; `attempts_before` stays NULL until then. The check just
-- before a retry covers every column the job relies on, not only the four it writes.
ALTER TABLE postman_retry.journal ADD COLUMN snap_recipient_md5 text;  -- the row's recipient, as a digest
ALTER TABLE postman_retry.journal ADD COLUMN snap_is_otp boolean;       -- the mapped OTP column, when there is one
COMMENT ON COLUMN postman_retry.journal.attempts_before IS
    'Postman''s attempt count before the retry call, as a list page or read showed it (the witness of a lost answer)';
