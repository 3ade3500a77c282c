-- The run that stopped polling a retry 48 hours old; that run's report lists it as never final. The report
-- used to find such retries by a time window from the start of the previous run of any scope: after a
-- `--campaign` run of other campaigns a moment before, a retry retired now was listed in no report.
ALTER TABLE postman_retry.journal ADD COLUMN never_final_run bigint;
