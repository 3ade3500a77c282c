import Foundation
import LibPQ
import RetryCore

/// What `RunSummary.load` reads: the run's row, its journal grouped by outcome, its skips and its
/// whole-batch calls.
enum SummaryReads {
    struct Run: Sendable {
        var startedAt: String
        var finishedAt: String?
        var status: String
        var apiCalls: RunSummary.APICalls
        var deferredByQuietHours: Int
    }

    /// One (campaign, origin, outcome, result, write state) group of journal rows.
    struct OutcomeGroup: Sendable {
        var campaignId: String
        var origin: JournalOrigin
        var outcome: JournalOutcome?
        var result: JournalResult?
        var writeState: WriteState?
        var n: Int
    }

    struct Skip: Sendable {
        var campaignId: String
        var reason: String
        var n: Int
    }

    static func run(db: PGConnection, runId: Int64) async throws -> Run {
        let run = try await db.query(
            """
            SELECT to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS started,
                   to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS finished, status,
                   api_retry_calls, api_poll_calls, api_rate_limited, api_batch_retry_calls, deferred_by_quiet_hours
            FROM \(fragment: Schema.runs) WHERE run_id = \(runId)
            """)[0]
        return Run(
            startedAt: try run.decode("started"), finishedAt: try run.optional("finished"), status: try run.decode("status"),
            apiCalls: RunSummary.APICalls(
                retry: try run.decode("api_retry_calls"), poll: try run.decode("api_poll_calls"),
                rateLimited: try run.decode("api_rate_limited"), batchRetry: try run.decode("api_batch_retry_calls")),
            deferredByQuietHours: try run.decode("deferred_by_quiet_hours"))
    }

    static func outcomeGroups(db: PGConnection, runId: Int64) async throws -> [OutcomeGroup] {
        try await db.query(
            """
            SELECT campaign_id, origin, outcome, result, write_state, count(*) AS n
            FROM \(fragment: Schema.journal) WHERE run_id = \(runId)
            GROUP BY 1, 2, 3, 4, 5
            """
        ).map { row in
            // V001's CHECKs allow only the enums' words; the counting rules read anything else as "not
            // carried over" and "not settled", as they always did.
            OutcomeGroup(
                campaignId: try row.decode("campaign_id"),
                origin: JournalOrigin(rawValue: try row.decode("origin")) ?? .selected,
                outcome: try row.optional("outcome", as: String.self).flatMap(JournalOutcome.init(rawValue:)),
                result: try row.optional("result", as: String.self).flatMap(JournalResult.init(rawValue:)),
                writeState: WriteState(rawValue: try row.decode("write_state")), n: try row.decode("n"))
        }
    }

    static func skips(db: PGConnection, runId: Int64) async throws -> [Skip] {
        try await db.query(
            "SELECT campaign_id, reason, count FROM \(fragment: Schema.skips) WHERE run_id = \(runId)"
        ).map { Skip(campaignId: try $0.decode("campaign_id"), reason: try $0.decode("reason"), n: try $0.decode("count")) }
    }

    static func batchCalls(db: PGConnection, runId: Int64) async throws -> [RunSummary.BatchCall] {
        try await db.query(
            """
            SELECT campaign_id, batch_id, members, http_status, postman_code,
                   to_char(intent_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS at
            FROM \(fragment: Schema.batchCalls) WHERE run_id = \(runId) ORDER BY intent_at, batch_id
            """
        ).map { row in
            RunSummary.BatchCall(
                campaignId: try row.decode("campaign_id"), batchId: try row.decode("batch_id"),
                members: try row.decode("members"),
                at: try row.decode("at"), httpStatus: try row.optional("http_status"),
                postmanCode: try row.optional("postman_code"))
        }
    }
}
