import Foundation
import LibPQ
import RetryCore

/// The counts of one run, read back from the journal (CONTRACT.md section 5: they add up).
public struct RunSummary: Sendable, Codable, Equatable {
    public struct Counts: Sendable, Codable, Equatable, OutcomeTally {
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
        /// Whole-batch retry requests; in the JSON only for a run that made any (CONTRACT.md section 5).
        public var batchRetry = 0
        enum CodingKeys: String, CodingKey { case retry, poll, rateLimited = "rate_limited", batchRetry = "batch_retry" }

        public init(retry: Int = 0, poll: Int = 0, rateLimited: Int = 0, batchRetry: Int = 0) {
            self.retry = retry
            self.poll = poll
            self.rateLimited = rateLimited
            self.batchRetry = batchRetry
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            retry = try c.decode(Int.self, forKey: .retry)
            poll = try c.decode(Int.self, forKey: .poll)
            rateLimited = try c.decode(Int.self, forKey: .rateLimited)
            batchRetry = try c.decodeIfPresent(Int.self, forKey: .batchRetry) ?? 0
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(retry, forKey: .retry)
            try c.encode(poll, forKey: .poll)
            try c.encode(rateLimited, forKey: .rateLimited)
            if batchRetry > 0 { try c.encode(batchRetry, forKey: .batchRetry) }
        }
    }

    /// One whole-batch retry call, for the report's line per call.
    public struct BatchCall: Sendable, Codable, Equatable {
        public var campaignId: String
        public var batchId: String
        public var members: Int
        public var at: String
        public var httpStatus: Int?
        public var postmanCode: String?
        enum CodingKeys: String, CodingKey {
            case campaignId = "campaign_id", batchId = "batch_id", members, at, httpStatus = "http_status"
            case postmanCode = "postman_code"
        }
    }

    /// One campaign's counts: the contract's four keys first, then the same breakdown as `Counts`
    /// (the report draws one bar per campaign from them).
    public struct Campaign: Sendable, Codable, Equatable, OutcomeTally {
        public var campaignId: String
        public var selected = 0, retried = 0, succeeded = 0, failed = 0
        public var pending = 0, exhausted = 0, notFound = 0, reconciled = 0, batchNotRetryable = 0, rejected = 0
        public var conflict = 0, carriedOver = 0, skipped = 0
        public var skippedByReason: [String: Int] = Dictionary(uniqueKeysWithValues: SkipReason.allCases.map { ($0.rawValue, 0) })

        public init(campaignId: String) { self.campaignId = campaignId }

        /// Summaries written before campaigns carried the full breakdown (and the contract's four keys)
        /// still decode: missing counts are 0.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            campaignId = try c.decode(String.self, forKey: .campaignId)
            func count(_ key: CodingKeys) throws -> Int { try c.decodeIfPresent(Int.self, forKey: key) ?? 0 }
            selected = try count(.selected)
            retried = try count(.retried)
            succeeded = try count(.succeeded)
            failed = try count(.failed)
            pending = try count(.pending)
            exhausted = try count(.exhausted)
            notFound = try count(.notFound)
            reconciled = try count(.reconciled)
            batchNotRetryable = try count(.batchNotRetryable)
            rejected = try count(.rejected)
            conflict = try count(.conflict)
            carriedOver = try count(.carriedOver)
            skipped = try count(.skipped)
            skippedByReason = try c.decodeIfPresent([String: Int].self, forKey: .skippedByReason) ?? skippedByReason
        }

        enum CodingKeys: String, CodingKey {
            case campaignId = "campaign_id", selected, retried, succeeded, failed
            case pending, exhausted, reconciled, rejected, conflict, skipped
            case notFound = "not_found", batchNotRetryable = "batch_not_retryable", carriedOver = "carried_over"
            case skippedByReason = "skipped_by_reason"
        }
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
    /// Whole-batch retry calls of the run (absent from the JSON when there were none).
    public var batchCalls: [BatchCall]? = nil

    enum CodingKeys: String, CodingKey {
        case runId = "run_id", startedAt = "started_at", finishedAt = "finished_at", status, counts
        case apiCalls = "api_calls", campaigns, writeConflicts = "write_conflicts"
        case deferredByQuietHours = "deferred_by_quiet_hours", batchCalls = "batch_calls"
    }

    public static func load(db: PGConnection, runId: Int64) async throws -> RunSummary {
        let schema = Migrator.schema
        let run = try await db.query(
            """
            SELECT to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS started,
                   to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS finished, status,
                   api_retry_calls, api_poll_calls, api_rate_limited, api_batch_retry_calls, deferred_by_quiet_hours
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
            counts.add(origin: origin, outcome: outcome, result: result, n: n)
            campaigns[campaign, default: Campaign(campaignId: campaign)].add(origin: origin, outcome: outcome, result: result, n: n)
        }
        let skips = try await db.query(
            "SELECT campaign_id, reason, count FROM \(qualified: [schema, "skips"]) WHERE run_id = \(runId)")
        for row in skips {
            let n: Int = try row.decode("count")
            let campaign: String = try row.decode("campaign_id")
            let reason: String = try row.decode("reason")
            counts.addSkipped(reason: reason, n: n)
            campaigns[campaign, default: Campaign(campaignId: campaign)].addSkipped(reason: reason, n: n)
        }
        let batchCalls = try await db.query(
            """
            SELECT campaign_id, batch_id, members, http_status, postman_code,
                   to_char(intent_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS at
            FROM \(qualified: [schema, "batch_calls"]) WHERE run_id = \(runId) ORDER BY intent_at, batch_id
            """
        ).map { row in
            BatchCall(
                campaignId: try row.decode("campaign_id"), batchId: try row.decode("batch_id"), members: try row.decode("members"),
                at: try row.decode("at"), httpStatus: try row.optional("http_status"), postmanCode: try row.optional("postman_code"))
        }
        return RunSummary(
            runId: String(runId), startedAt: try run.decode("started"), finishedAt: try run.optional("finished"),
            status: try run.decode("status"), counts: counts,
            apiCalls: APICalls(
                retry: try run.decode("api_retry_calls"), poll: try run.decode("api_poll_calls"),
                rateLimited: try run.decode("api_rate_limited"), batchRetry: try run.decode("api_batch_retry_calls")),
            campaigns: campaigns.values.sorted { $0.campaignId < $1.campaignId }, writeConflicts: writeConflicts,
            deferredByQuietHours: try run.decode("deferred_by_quiet_hours"), batchCalls: batchCalls.isEmpty ? nil : batchCalls)
    }
}

/// The outcome arithmetic of CONTRACT.md section 5, shared by the run totals and each campaign so
/// both are counted by the same rules.
public protocol OutcomeTally {
    var selected: Int { get set }
    var retried: Int { get set }
    var succeeded: Int { get set }
    var failed: Int { get set }
    var pending: Int { get set }
    var exhausted: Int { get set }
    var notFound: Int { get set }
    var reconciled: Int { get set }
    var batchNotRetryable: Int { get set }
    var rejected: Int { get set }
    var conflict: Int { get set }
    var carriedOver: Int { get set }
    var skipped: Int { get set }
    var skippedByReason: [String: Int] { get set }
}

extension OutcomeTally {
    /// Counts `n` journal rows of one (origin, outcome, result).
    mutating func add(origin: String, outcome: String?, result: String?, n: Int) {
        if origin == "carried_over" {
            carriedOver += n
            return
        }
        selected += n
        switch outcome {
        case "retried":
            retried += n
            switch result {
            case "succeeded": succeeded += n
            case "failed": failed += n
            default: pending += n  // accepted and not final yet counts as pending
            }
        case "exhausted": exhausted += n
        case "not_found": notFound += n
        case "reconciled": reconciled += n
        case "batch_not_retryable": batchNotRetryable += n
        case "rejected": rejected += n
        case "conflict": conflict += n
        default: break  // not settled yet (an interrupted run)
        }
    }

    mutating func addSkipped(reason: String, n: Int) {
        skippedByReason[reason, default: 0] += n
        skipped += n
    }
}
