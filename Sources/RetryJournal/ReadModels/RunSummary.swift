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
        /// A run that has not finished (interrupted, stopped by a refused key, still running): the messages it
        /// selected and has not settled yet. They are left out of `selected` so that the contract's sums hold
        /// for such a summary too (as `deferred_by_quiet_hours` is); the run that resumes it counts them.
        /// Absent from the JSON when there are none, which a completed run never has.
        public var unsettled: Int?

        enum CodingKeys: String, CodingKey {
            case selected, retried, succeeded, failed, pending, exhausted, reconciled, rejected, conflict, skipped, unsettled
            case notFound = "not_found"
            case batchNotRetryable = "batch_not_retryable"
            case carriedOver = "carried_over"
            case skippedByReason = "skipped_by_reason"
        }
    }

    public struct APICalls: Sendable, Codable, Equatable {
        public var retry = 0, poll = 0, rateLimited = 0
        /// Whole-batch retry requests; in the JSON only for a run that made any (CONTRACT.md section 5).
        public var batchRetry = 0
        enum CodingKeys: String, CodingKey {
            case retry, poll
            case rateLimited = "rate_limited"
            case batchRetry = "batch_retry"
        }

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
            case campaignId = "campaign_id"
            case batchId = "batch_id"
            case members, at
            case httpStatus = "http_status"
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
        /// As `Counts.unsettled`.
        public var unsettled: Int?

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
            unsettled = try c.decodeIfPresent(Int.self, forKey: .unsettled)
        }

        enum CodingKeys: String, CodingKey {
            case campaignId = "campaign_id"
            case selected, retried, succeeded, failed
            case pending, exhausted, reconciled, rejected, conflict, skipped, unsettled
            case notFound = "not_found"
            case batchNotRetryable = "batch_not_retryable"
            case carriedOver = "carried_over"
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
        case runId = "run_id"
        case startedAt = "started_at"
        case finishedAt = "finished_at"
        case status, counts
        case apiCalls = "api_calls"
        case campaigns
        case writeConflicts = "write_conflicts"
        case deferredByQuietHours = "deferred_by_quiet_hours"
        case batchCalls = "batch_calls"
    }

    public static func load(db: PGConnection, runId: Int64) async throws -> RunSummary {
        let run = try await SummaryReads.run(db: db, runId: runId)
        var counts = Counts()
        var campaigns: [String: Campaign] = [:]
        var writeConflicts = 0
        for group in try await SummaryReads.outcomeGroups(db: db, runId: runId) {
            if group.writeState == .conflict { writeConflicts += group.n }
            counts.add(origin: group.origin, outcome: group.outcome, result: group.result, n: group.n)
            campaigns[group.campaignId, default: Campaign(campaignId: group.campaignId)].add(
                origin: group.origin, outcome: group.outcome, result: group.result, n: group.n)
        }
        for skip in try await SummaryReads.skips(db: db, runId: runId) {
            counts.addSkipped(reason: skip.reason, n: skip.n)
            campaigns[skip.campaignId, default: Campaign(campaignId: skip.campaignId)].addSkipped(reason: skip.reason, n: skip.n)
        }
        let batchCalls = try await SummaryReads.batchCalls(db: db, runId: runId)
        return RunSummary(
            runId: String(runId), startedAt: run.startedAt, finishedAt: run.finishedAt, status: run.status, counts: counts,
            apiCalls: run.apiCalls, campaigns: campaigns.values.sorted { $0.campaignId < $1.campaignId },
            writeConflicts: writeConflicts, deferredByQuietHours: run.deferredByQuietHours,
            batchCalls: batchCalls.isEmpty ? nil : batchCalls)
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
    var unsettled: Int? { get set }
}

extension OutcomeTally {
    /// Counts `n` journal rows of one (origin, outcome, result).
    mutating func add(origin: JournalOrigin, outcome: JournalOutcome?, result: JournalResult?, n: Int) {
        if origin == .carriedOver {
            carriedOver += n
            return
        }
        guard outcome != nil else {
            // Not settled yet (a run that has not finished): outside the sums, see `Counts.unsettled`.
            unsettled = (unsettled ?? 0) + n
            return
        }
        selected += n
        switch outcome {
        case .retried:
            retried += n
            switch result {
            case .succeeded: succeeded += n
            case .failed: failed += n
            case .pending, nil: pending += n  // accepted and not final yet counts as pending
            }
        case .exhausted: exhausted += n
        case .notFound: notFound += n
        case .reconciled: reconciled += n
        case .batchNotRetryable: batchNotRetryable += n
        case .rejected: rejected += n
        case .conflict: conflict += n
        case nil: break  // counted as unsettled above
        }
    }

    mutating func addSkipped(reason: String, n: Int) {
        skippedByReason[reason, default: 0] += n
        skipped += n
    }
}
