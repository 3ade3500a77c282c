import RetryJournal

/// The summary `postman-retry run` prints when it ends (`--format text`; with `--format json` it
/// prints `RunSummary` itself).
public enum RunSummaryText {
    /// One line: every count of CONTRACT.md section 5 and the API calls, in the contract's order.
    public static func line(runId: Int64, status: String, summary: RunSummary) -> String {
        let c = summary.counts
        return "run \(runId) \(status): \(c.selected) selected, \(c.retried) retried "
            + "(\(c.succeeded) succeeded, \(c.failed) failed, \(c.pending) pending), \(c.exhausted) exhausted, "
            + "\(c.reconciled) reconciled, \(c.notFound) not found, \(c.batchNotRetryable) batch not retryable, "
            + "\(c.rejected) rejected, \(c.conflict) conflicts, \(c.carriedOver) carried over, \(c.skipped) skipped; "
            + "API calls: \(summary.apiCalls.retry) retry, \(summary.apiCalls.poll) read, "
            + "\(summary.apiCalls.rateLimited) rate-limited"
            + (c.unsettled.map { "; \($0) more selected and not settled yet (the next run resumes them)" } ?? "")
    }
}
