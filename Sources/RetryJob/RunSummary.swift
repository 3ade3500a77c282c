import Foundation
import LibPQ
import RetryCore

/// The counts of one run, read back from the journal (CONTRACT.md section 5: they add up).
public struct RunSummary: Sendable, Codable, Equatable {
    public struct Counts: Sendable, Codable, Equatable {
        public var selected = 0, retried = 0, succeeded = 0, failed = 0, pending = 0, exhausted = 0
        public var notFound = 0, reconciled = 0, batchNotRetryable = 0, rejected = 0, conflict = 0
        public var carriedOver = 0, skipped = 0
        public var skippedByReason: [String: Int] = Dictionary(uniqueKeysWithValues: SkipReason.allCases.map { ($0.rawValue, 0) })

        enum CodingKeys: String, CodingKey {
            case selected, retried, succeeded, failed, pending, exhausted, reconciled, rejected, conflict, skipped
            case notFound = "not_found", batchNotRetryable = "batch_not_retryable", carriedOver = "carried_over"
            case skippedByReason = "skipped_by_reason"
        }
    }

    public struct APICalls: Sendable, Codable, Equatable {
        public var retry = 0, poll = 0, rateLimited = 0
        enum CodingKeys: String, CodingKey { case retry, poll, rateLimited = "rate_limited" }
    }

    public struct Campaign: Sendable, Codable, Equatable {
        public var campaignId: String
        public var selected = 0, retried = 0, succeeded = 0, failed = 0
        enum CodingKeys: String, CodingKey { case campaignId = "campaign_id", selected, retried, succeeded, failed }
    }

    public var runId: String
    public var startedAt: String
    public var finishedAt: String?
    public var status: String
    public var counts: Counts
    public var apiCalls: APICalls
    public var campaigns: [Campaign]
    /// Rows the agency's application changed before write-back: outcome counted, row not overwritten.
    public var writeConflicts: Int
    /// Selected, then not sent because quiet hours began; left for the next run and not in `counts`.
    public var deferredByQuietHours: Int = 0

    enum CodingKeys: String, CodingKey {
        case runId = "run_id", startedAt = "started_at", finishedAt = "finished_at", status, counts
        case apiCalls = "api_calls", campaigns, writeConflicts = "write_conflicts"
        case deferredByQuietHours = "deferred_by_quiet_hours"
    }

    public static func load(db: PGConnection, runId: Int64) async throws -> RunSummary {
        let schema = Migrator.schema
        let run = try await db.query(
            """
            SELECT to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS started,
                   to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS finished, status,
                   api_retry_calls, api_poll_calls, api_rate_limited, deferred_by_quiet_hours
            FROM \(qualified: [schema, "runs"]) WHERE run_id = \(runId)
            """)[0]
        var counts = Counts()
        var campaigns: [String: Campaign] = [:]
        var writeConflicts = 0
        let rows = try await db.query(
            """
            SELECT campaign_id, origin, outcome, result, write_state, count(*) AS n
            FROM \(qualified: [schema, "journal"]) WHERE run_id = \(runId)
            GROUP BY 1, 2, 3, 4, 5
            """)
        for row in rows {
            let n: Int = try row.decode("n")
            let campaign: String = try row.decode("campaign_id")
            let origin: String = try row.decode("origin")
            let outcome: String? = try row.optional("outcome")
            let result: String? = try row.optional("result")
            if try row.decode("write_state", as: String.self) == "conflict" { writeConflicts += n }
            if origin == "carried_over" {
                counts.carriedOver += n
                continue
            }
            var entry = campaigns[campaign] ?? Campaign(campaignId: campaign)
            counts.selected += n
            entry.selected += n
            switch outcome {
            case "retried":
                counts.retried += n
                entry.retried += n
                switch result {
                case "succeeded":
                    counts.succeeded += n
                    entry.succeeded += n
                case "failed":
                    counts.failed += n
                    entry.failed += n
                default: counts.pending += n  // accepted and not final yet counts as pending
                }
            case "exhausted": counts.exhausted += n
            case "not_found": counts.notFound += n
            case "reconciled": counts.reconciled += n
            case "batch_not_retryable": counts.batchNotRetryable += n
            case "rejected": counts.rejected += n
            case "conflict": counts.conflict += n
            default: break  // not settled yet (an interrupted run)
            }
            campaigns[campaign] = entry
        }
        let skips = try await db.query(
            "SELECT campaign_id, reason, count FROM \(qualified: [schema, "skips"]) WHERE run_id = \(runId)")
        for row in skips {
            let n: Int = try row.decode("count")
            counts.skippedByReason[try row.decode("reason"), default: 0] += n
            counts.skipped += n
        }
        return RunSummary(
            runId: String(runId), startedAt: try run.decode("started"), finishedAt: try run.optional("finished"),
            status: try run.decode("status"), counts: counts,
            apiCalls: APICalls(
                retry: try run.decode("api_retry_calls"), poll: try run.decode("api_poll_calls"),
                rateLimited: try run.decode("api_rate_limited")),
            campaigns: campaigns.values.sorted { $0.campaignId < $1.campaignId }, writeConflicts: writeConflicts,
            deferredByQuietHours: try run.decode("deferred_by_quiet_hours"))
    }
}
