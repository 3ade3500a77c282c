import Foundation
import LibPQ
import RetryCore
import RetrySettings

/// What `postman-retry runs`, the metrics and `plan` read from the journal.
public enum HistoryReads {
    /// One row of `runs`, newest first; the counts come from `RunSummary.load`.
    public struct RunRow: Sendable {
        public var runId: Int64
        /// Processes that worked on the run (more than one when it was interrupted and resumed).
        public var attempts: Int
        public var lastError: String?
        public var durationSeconds: Double?
    }

    public static func recentRuns(db: PGConnection, limit: Int) async throws -> [RunRow] {
        try await db.query(
            """
            SELECT run_id, attempts, last_error,
                   EXTRACT(EPOCH FROM (COALESCE(finished_at, now()) - started_at))::float8 AS duration
            FROM \(fragment: Schema.runs) ORDER BY run_id DESC LIMIT \(limit)
            """
        ).map { row in
            RunRow(
                runId: try row.decode("run_id"), attempts: try row.decode("attempts"), lastError: try row.optional("last_error"),
                durationSeconds: try row.optional("duration"))
        }
    }

    /// When the latest completed run finished, or nil when the journal has none.
    public static func lastSuccess(db: PGConnection) async throws -> Date? {
        let rows = try await db.query(
            """
            SELECT extract(epoch FROM max(finished_at))::float8 AS t
            FROM \(fragment: Schema.runs) WHERE status = \(literal: RunStatus.completed)
            """)
        return try rows.first?.optional("t", as: Double.self).map { Date(timeIntervalSince1970: $0) }
    }

    /// `plan`: the pending retries of earlier runs that the next run would carry over, by campaign
    /// (every campaign when `campaigns` is empty): the same test as `RunStore`'s carry-over, so one whose
    /// write-back met a changed row (the agency's now) is not counted.
    public static func carriedOverCounts(db: PGConnection, campaigns: [String]) async throws -> [String: Int] {
        var carried: [String: Int] = [:]
        let rows = try await db.query(
            """
            SELECT campaign_id, count(*) AS n FROM \(fragment: Schema.journal)
            WHERE result = \(literal: JournalResult.pending) AND superseded_by_run IS NULL AND never_final = false
              AND accepted_at > now() - interval '48 hours' AND write_state = \(literal: WriteState.written)
              AND (\(campaigns.isEmpty) OR campaign_id = ANY(\(campaigns)::text[]))
            GROUP BY 1
            """)
        for row in rows { carried[try row.decode("campaign_id")] = try row.decode("n") }
        return carried
    }
}
