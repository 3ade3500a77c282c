import Foundation
import LibPQ
import RetryCore
import RetrySettings

/// What the report (RetryReport's `RunReport`) reads from the journal, beside `RunSummary`. The
/// caller holds one read-only snapshot around all of it (`inReadOnlySnapshot`).
public enum ReportReads {
    /// The run's row.
    public struct Run: Sendable {
        public var agencyTable: String
        /// Processes that worked on the run.
        public var attempts: Int
        public var lastError: String?
        public var startedAt: Date
        public var durationSeconds: Double?
    }

    /// One whole second of one campaign's requests, `offset` seconds after the run's first request.
    public struct RequestSecond: Sendable {
        public var campaignId: String
        public var offset: Int
        public var requests: Int
        public var rateLimited: Int
    }

    /// This run's accepted retries, as the cost model sorts them.
    public struct ChargeCounts: Sendable {
        public var local = 0
        public var foreign = 0
        public var free = 0
    }

    public struct MalformedRow: Sendable {
        public var rowKey: String
        public var field: String
        public var problem: String
    }

    public struct UnknownStatusRow: Sendable {
        public var campaignId: String
        public var messageId: String
        public var status: String
    }

    /// A settled journal row that needs a person (write conflict, failed again, exhausted, not found,
    /// rejected, conflict).
    public struct AttentionRow: Sendable {
        public var campaignId: String
        public var messageId: String
        public var batchId: String
        public var rowKey: String
        public var recipientMasked: String
        public var outcome: JournalOutcome?
        public var writeState: WriteState?
        /// The newest error of a retried message, else Postman's code ("" when none).
        public var code: String
        public var detail: String
        public var retryCount: Int?
    }

    /// A message an earlier run's retry left pending that this run stopped polling.
    public struct NeverFinalRow: Sendable {
        public var campaignId: String
        public var messageId: String
        public var batchId: String
        public var rowKey: String
        public var recipientMasked: String
        public var lastStatus: String
        public var retryCount: Int?
    }

    /// Runs `body` in one REPEATABLE READ, READ ONLY transaction, so every read sees the same journal.
    public static func inReadOnlySnapshot<T: Sendable>(db: PGConnection, _ body: () async throws -> T) async throws -> T {
        _ = try await db.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        do {
            let result = try await body()
            _ = try await db.query("COMMIT")
            return result
        } catch {
            _ = try? await db.query("ROLLBACK")
            throw error
        }
    }

    /// The newest run's id, or nil when there is none.
    public static func latestRunId(db: PGConnection) async throws -> Int64? {
        try await db.query("SELECT max(run_id) AS id FROM \(fragment: Schema.runs)")[0].optional("id")
    }

    /// The run's row; a usage error when there is no such run.
    public static func run(db: PGConnection, runId: Int64) async throws -> Run {
        let rows = try await db.query(
            """
            SELECT agency_table, attempts, last_error, started_at,
                   EXTRACT(EPOCH FROM (COALESCE(finished_at, now()) - started_at))::float8 AS duration
            FROM \(fragment: Schema.runs) WHERE run_id = \(runId)
            """)
        guard let run = rows.first else { throw JobError(.usage, "there is no run \(runId) in postman_retry.runs") }
        return Run(
            agencyTable: try run.decode("agency_table"), attempts: try run.decode("attempts"),
            lastError: try run.optional("last_error"), startedAt: try run.decode("started_at"),
            durationSeconds: try run.optional("duration"))
    }

    /// The latest completed run before `runId`, for the comparison.
    public static func previousCompletedRunId(db: PGConnection, before runId: Int64) async throws -> Int64? {
        try await db.query(
            """
            SELECT max(run_id) AS id FROM \(fragment: Schema.runs) WHERE run_id < \(runId) AND status = \(literal: RunStatus.completed)
            """)[0].optional("id")
    }

    /// The limit each campaign ran under.
    public static func rateLimits(db: PGConnection, runId: Int64) async throws -> [String: Int] {
        var limits: [String: Int] = [:]
        for row in try await db.query(
            "SELECT campaign_id, rate_limit FROM \(fragment: Schema.runCampaigns) WHERE run_id = \(runId)")
        {
            limits[try row.decode("campaign_id")] = try row.decode("rate_limit")
        }
        return limits
    }

    /// Requests per second and campaign, in time order.
    public static func requestSeconds(db: PGConnection, runId: Int64) async throws -> [RequestSecond] {
        try await db.query(
            """
            SELECT campaign_id, requests, rate_limited,
                   (EXTRACT(EPOCH FROM second) - min(EXTRACT(EPOCH FROM second)) OVER ())::bigint AS offset_s
            FROM \(fragment: Schema.requestSeconds) WHERE run_id = \(runId) ORDER BY second
            """
        ).map {
            RequestSecond(
                campaignId: try $0.decode("campaign_id"), offset: try $0.decode("offset_s"), requests: try $0.decode("requests"),
                rateLimited: try $0.decode("rate_limited"))
        }
    }

    /// Seconds from accepted retry to final status, for this run's own retries, ascending.
    public static func secondsToOutcome(db: PGConnection, runId: Int64) async throws -> [Double] {
        let outcomeRows = try await db.query(
            """
            SELECT EXTRACT(EPOCH FROM (final_at - accepted_at))::float8 AS s FROM \(fragment: Schema.journal)
            WHERE run_id = \(runId) AND origin = \(literal: JournalOrigin.selected) AND outcome = \(literal: JournalOutcome.retried)
              AND result IN \(literals: [JournalResult.succeeded, .failed])
              AND final_at IS NOT NULL AND accepted_at IS NOT NULL
            ORDER BY 1
            """)
        return try outcomeRows.map { max(0, try $0.decode("s", as: Double.self)) }
    }

    /// Retries that failed again, by newest error code; counted like RunSummary counts `failed` (selected
    /// rows only), so the codes add up to it.
    public static func failedByCode(db: PGConnection, runId: Int64) async throws -> [String: Int] {
        try await countsByCode(
            db: db,
            """
            SELECT COALESCE(newest_error, '') AS code, count(*) AS n FROM \(fragment: Schema.journal)
            WHERE run_id = \(runId) AND origin = \(literal: JournalOrigin.selected) AND outcome = \(literal: JournalOutcome.retried)
              AND result = \(literal: JournalResult.failed) GROUP BY 1
            """)
    }

    /// Retries Postman refused, by its code (or the HTTP status when it gave none).
    public static func rejectedByCode(db: PGConnection, runId: Int64) async throws -> [String: Int] {
        try await countsByCode(
            db: db,
            """
            SELECT COALESCE(postman_code, 'HTTP ' || COALESCE(http_status::text, '?')) AS code, count(*) AS n
            FROM \(fragment: Schema.journal) WHERE run_id = \(runId) AND origin = \(literal: JournalOrigin.selected)
              AND outcome = \(literal: JournalOutcome.rejected) GROUP BY 1
            """)
    }

    private static func countsByCode(db: PGConnection, _ query: PGQuery) async throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for row in try await db.query(query) { counts[try row.decode("code")] = try row.decode("n") }
        return counts
    }

    /// This run's accepted retries (carried-over ones were billed in their own run): local numbers by
    /// `localPrefix`, and the failures with a code in `freeCodes`, which are not charged.
    public static func chargeCounts(db: PGConnection, runId: Int64, localPrefix: String, freeCodes: [String]) async throws
        -> ChargeCounts
    {
        var counts = ChargeCounts()
        for row in try await db.query(
            """
            SELECT starts_with(recipient_masked, \(localPrefix)) AS local,
                   (result = \(literal: JournalResult.failed) AND newest_error = ANY(\(freeCodes)::text[])) IS TRUE AS free,
                   count(*) AS n
            FROM \(fragment: Schema.journal) WHERE run_id = \(runId) AND origin = \(literal: JournalOrigin.selected)
              AND outcome = \(literal: JournalOutcome.retried)
            GROUP BY 1, 2
            """)
        {
            let n: Int = try row.decode("n")
            if try row.decode("free", as: Bool.self) {
                counts.free += n
            } else if try row.decode("local", as: Bool.self) {
                counts.local += n
            } else {
                counts.foreign += n
            }
        }
        return counts
    }

    public static func malformedRows(db: PGConnection, runId: Int64) async throws -> [MalformedRow] {
        try await db.query(
            """
            SELECT row_key, field, problem FROM \(fragment: Schema.malformedRows) WHERE run_id = \(runId)
            ORDER BY row_key, field
            """
        ).map { MalformedRow(rowKey: try $0.decode("row_key"), field: try $0.decode("field"), problem: try $0.decode("problem")) }
    }

    public static func unknownStatuses(db: PGConnection, runId: Int64) async throws -> [UnknownStatusRow] {
        try await db.query(
            """
            SELECT campaign_id, message_id, unknown_status FROM \(fragment: Schema.journal)
            WHERE run_id = \(runId) AND unknown_status IS NOT NULL ORDER BY campaign_id, message_id
            """
        ).map {
            UnknownStatusRow(
                campaignId: try $0.decode("campaign_id"), messageId: try $0.decode("message_id"),
                status: try $0.decode("unknown_status"))
        }
    }

    /// The settled rows of the run that need a person, in the agency table's order.
    public static func attentionRows(db: PGConnection, runId: Int64) async throws -> [AttentionRow] {
        let needsPerson: [JournalOutcome] = [.exhausted, .notFound, .rejected, .conflict]
        return try await db.query(
            """
            SELECT campaign_id, message_id, COALESCE(batch_id, '') AS batch_id, row_key, recipient_masked,
                   outcome, result, write_state, COALESCE(target_retry_count, snap_retry_count) AS retry_count,
                   CASE WHEN outcome = \(literal: JournalOutcome.retried) THEN COALESCE(newest_error, '')
                        ELSE COALESCE(postman_code, '') END AS code,
                   CASE WHEN write_state = \(literal: WriteState.refused) THEN COALESCE(write_error, '')
                        ELSE COALESCE(postman_message, '') END AS detail
            FROM \(fragment: Schema.journal)
            WHERE run_id = \(runId) AND (
                write_state IN \(literals: [WriteState.conflict, .refused])
                OR (outcome = \(literal: JournalOutcome.retried) AND result = \(literal: JournalResult.failed))
                OR outcome IN \(literals: needsPerson))
            ORDER BY campaign_id, row_created_at, row_key
            """
        ).map { row in
            AttentionRow(
                campaignId: try row.decode("campaign_id"), messageId: try row.decode("message_id"),
                batchId: try row.decode("batch_id"), rowKey: try row.decode("row_key"),
                recipientMasked: try row.decode("recipient_masked"),
                outcome: JournalOutcome(rawValue: try row.decode("outcome")),
                writeState: WriteState(rawValue: try row.decode("write_state")), code: try row.decode("code"),
                detail: try row.decode("detail"), retryCount: try row.optional("retry_count"))
        }
    }

    /// Messages this run stopped polling: still pending `window` after their retry, marked during this
    /// run's carry-over (`never_final_run`, V009). Those marked before V009 are found by time: their retry
    /// is between `window` before the previous run and `window` before this one.
    public static func neverFinalRows(db: PGConnection, runId: Int64, startedAt: Date, window: Duration) async throws
        -> [NeverFinalRow]
    {
        let seconds = Int(window.components.seconds)
        return try await db.query(
            """
            SELECT campaign_id, message_id, COALESCE(batch_id, '') AS batch_id, row_key, recipient_masked,
                   COALESCE(last_status, '') AS last_status, snap_retry_count
            FROM \(fragment: Schema.journal) j
            WHERE never_final AND superseded_by_run IS NULL AND run_id < \(runId)
              AND (never_final_run = \(runId)
                   OR never_final_run IS NULL  -- retired before V009: found by the window it fell in
                      AND accepted_at < \(startedAt)::timestamptz - make_interval(secs => \(seconds))
                      AND accepted_at >= COALESCE(
                          (SELECT max(started_at) FROM \(fragment: Schema.runs) WHERE run_id < \(runId)),
                          '-infinity'::timestamptz) - make_interval(secs => \(seconds)))
            ORDER BY campaign_id, message_id
            """
        ).map { row in
            NeverFinalRow(
                campaignId: try row.decode("campaign_id"), messageId: try row.decode("message_id"),
                batchId: try row.decode("batch_id"), rowKey: try row.decode("row_key"),
                recipientMasked: try row.decode("recipient_masked"), lastStatus: try row.decode("last_status"),
                retryCount: try row.optional("snap_retry_count"))
        }
    }
}
