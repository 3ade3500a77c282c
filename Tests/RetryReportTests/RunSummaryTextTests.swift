import Foundation
import RetryJob
import RetryJournal
import RetryReport
import Testing

/// The line `postman-retry run` prints at the end in text format.
@Suite struct RunSummaryTextTests {
    @Test func namesEveryCountAndTheCalls() throws {
        let json = """
            {"run_id": "7", "started_at": "2026-11-21T12:00:00Z", "finished_at": null, "status": "completed",
             "counts": {"selected": 12, "retried": 9, "succeeded": 6, "failed": 2, "pending": 1, "exhausted": 1,
                        "not_found": 1, "reconciled": 1, "batch_not_retryable": 0, "rejected": 0, "conflict": 0,
                        "carried_over": 3, "skipped": 4,
                        "skipped_by_reason": {"otp": 2, "retry_limit": 1, "permanent_error": 1, "unknown_error_code": 0,
                                              "malformed": 0}},
             "api_calls": {"retry": 9, "poll": 14, "rate_limited": 2}, "campaigns": [], "write_conflicts": 0,
             "deferred_by_quiet_hours": 0}
            """
        let summary = try JSONDecoder().decode(RunSummary.self, from: Data(json.utf8))
        #expect(
            RunSummaryText.line(runId: 7, status: "completed", summary: summary)
                == "run 7 completed: 12 selected, 9 retried (6 succeeded, 2 failed, 1 pending), 1 exhausted, "
                + "1 reconciled, 1 not found, 0 batch not retryable, 0 rejected, 0 conflicts, 3 carried over, 4 skipped; "
                + "API calls: 9 retry, 14 read, 2 rate-limited")
    }
}
