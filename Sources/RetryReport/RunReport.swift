import Foundation
import LibPQ
import RetryCore
import RetryJournal
import RetrySettings

/// Everything the four report files show about one run, read from the job's own schema in one
/// snapshot. Counts come from `RunSummary` (the journal's single counting rule); this adds what a
/// person needs on top: rates, timings, codes, cost, and the messages that need a human.
public struct RunReport: Sendable {
    /// One whole second of one campaign's requests.
    public struct Second: Sendable, Equatable {
        public var offset: Int  // seconds since the run's first request
        public var requests: Int
        public var rateLimited: Int
    }

    public struct CampaignRate: Sendable, Equatable {
        public var campaignId: String
        /// The configured limit (nil when the campaign sent nothing, so none was recorded).
        public var rateLimit: Int?
        public var seconds: [Second]
        public var requests: Int { seconds.map(\.requests).reduce(0, +) }
        public var rateLimited: Int { seconds.map(\.rateLimited).reduce(0, +) }
        public var peak: Int { seconds.map(\.requests).max() ?? 0 }
    }

    /// A message that still needs a person, one row of failures.csv.
    public struct Attention: Sendable, Equatable {
        public enum Category: String, Sendable, CaseIterable {
            case writeConflict = "write_conflict"
            case writeRefused = "write_refused"
            case permanentError = "permanent_error"
            case failedAgain = "failed_again"
            case exhausted
            case notFound = "not_found"
            case rejected
            case conflict
            case neverFinal = "never_final"
            case malformed
        }
        public var category: Category
        public var campaignId: String
        public var messageId: String
        public var batchId: String
        public var rowKey: String
        public var recipientMasked: String
        public var code: String
        public var detail: String
        public var retryCount: Int?
        public var writtenBack: Bool

        public var info: ErrorCodeInfo { ErrorCatalog.info(code.isEmpty ? nil : code) }

        /// What happened, in words: the code's meaning where a delivery code decided it.
        public var meaning: String {
            switch category {
            case .permanentError, .failedAgain: return info.meaning
            case .exhausted: return ErrorCatalog.info("too_many_message_attempts_error").meaning
            case .notFound: return "Postman does not know this message."
            case .rejected: return detail.isEmpty ? "Postman refused the retry." : detail
            case .conflict: return "The agency row changed after the job read it, before its retry."
            case .writeConflict: return "The agency row changed during the run; Postman's outcome was not written back."
            case .writeRefused: return "The agency table refused Postman's outcome for this row: \(detail)"
            case .neverFinal: return "No final status 48 hours after the retry; no longer polled."
            case .malformed: return detail
            }
        }

        /// Postman's yes/no/maybe for the code, where a delivery code decided the outcome.
        public var worthRetrying: String {
            switch category {
            case .permanentError, .failedAgain: return info.worthRetrying.rawValue
            case .exhausted: return "no"
            default: return ""
            }
        }

        /// What to do, by category first (the code's own advice where the code decides).
        public var suggestedAction: String {
            switch category {
            case .writeConflict:
                return "The agency row changed during the run, so Postman's outcome was not written: compare the row with "
                    + "Postman and update it by hand."
            case .writeRefused:
                return "The table's own rules (a CHECK, an enum, a column too short, a trigger) refused the outcome, so the "
                    + "row was left as it was: widen the rule or update the row by hand from Postman."
            case .exhausted:
                return ErrorCatalog.info("too_many_message_attempts_error").action
            case .notFound:
                return "Postman does not know this message id: check the row's message_id and campaign_id."
            case .rejected:
                return "Postman refused the retry (\(code.isEmpty ? "no code" : code)): read its message and fix the cause."
            case .conflict:
                return "The row changed before its retry, so it was not retried; the next run looks at it again."
            case .neverFinal:
                return "No final status 48 hours after the retry: look the message up in Postman; a new message may be "
                    + "needed (the recipient may get it twice)."
            case .malformed:
                return "Fix the row's \(code) in the agency table; the next run picks it up."
            case .permanentError, .failedAgain:
                if let count = retryCount, count >= SelectionRules.retryLimit {
                    return "No retries left (\(SelectionRules.retryLimit) used). " + info.action
                }
                return info.action
            }
        }
    }

    public struct Malformed: Sendable, Equatable {
        public var rowKey: String
        public var field: String
        public var problem: String
    }

    public struct UnknownStatus: Sendable, Equatable {
        public var campaignId: String
        public var messageId: String
        public var status: String
    }

    public var summary: RunSummary
    /// The latest completed run before this one, for the comparison.
    public var previous: RunSummary?
    public var agencyTable: String
    /// Processes that worked on the run (more than one when it was interrupted and resumed).
    public var processes: Int
    public var lastError: String?
    public var durationSeconds: Double?
    public var rates: [CampaignRate]
    /// Seconds from the accepted retry to the job seeing its final status, for this run's retries.
    public var secondsToOutcome: [Double]
    /// Retries that failed again, by their newest error code ("" when Postman gave none).
    public var failedByCode: [String: Int]
    /// Retries Postman refused with a 4xx other than the handled ones, by code.
    public var rejectedByCode: [String: Int]
    public var attention: [Attention]
    public var malformed: [Malformed]
    public var unknownStatuses: [UnknownStatus]
    public var cost: CostEstimate
    public var generatedAt: Date

    /// Loads the report of `runId` in one read-only snapshot.
    public static func load(db: PGConnection, runId: Int64, cost model: CostModel = .postmanDefault, now: Date = Date())
        async throws -> RunReport
    {
        try await ReportReads.inReadOnlySnapshot(db: db) {
            try await loadInSnapshot(db: db, runId: runId, cost: model, now: now)
        }
    }

    /// The newest run's id, or nil when there is none.
    public static func latestRunId(db: PGConnection) async throws -> Int64? {
        try await ReportReads.latestRunId(db: db)
    }

    private static func loadInSnapshot(db: PGConnection, runId: Int64, cost model: CostModel, now: Date) async throws
        -> RunReport
    {
        let run = try await ReportReads.run(db: db, runId: runId)
        let summary = try await RunSummary.load(db: db, runId: runId)
        let malformed = try await ReportReads.malformedRows(db: db, runId: runId).map {
            Malformed(rowKey: $0.rowKey, field: $0.field, problem: $0.problem)
        }
        let malformedAttention = malformed.map {
            Attention(
                category: .malformed, campaignId: "", messageId: "", batchId: "", rowKey: $0.rowKey, recipientMasked: "",
                code: $0.field, detail: $0.problem, retryCount: nil, writtenBack: false)
        }
        let previousId = try await ReportReads.previousCompletedRunId(db: db, before: runId)
        return RunReport(
            summary: summary, previous: try await previousId.asyncMap { try await RunSummary.load(db: db, runId: $0) },
            agencyTable: run.agencyTable, processes: run.attempts, lastError: run.lastError,
            durationSeconds: run.durationSeconds,
            rates: try await campaignRates(db: db, runId: runId),
            secondsToOutcome: try await ReportReads.secondsToOutcome(db: db, runId: runId),
            failedByCode: try await ReportReads.failedByCode(db: db, runId: runId),
            rejectedByCode: try await ReportReads.rejectedByCode(db: db, runId: runId),
            attention: try await attentionRows(db: db, runId: runId, startedAt: run.startedAt) + malformedAttention,
            malformed: malformed,
            unknownStatuses: try await ReportReads.unknownStatuses(db: db, runId: runId).map {
                UnknownStatus(campaignId: $0.campaignId, messageId: $0.messageId, status: $0.status)
            },
            cost: try await costEstimate(db: db, runId: runId, model: model), generatedAt: now)
    }

    /// Request rate per second and campaign, with the limit each campaign ran under.
    private static func campaignRates(db: PGConnection, runId: Int64) async throws -> [CampaignRate] {
        let limits = try await ReportReads.rateLimits(db: db, runId: runId)
        var seconds: [String: [Second]] = [:]
        for second in try await ReportReads.requestSeconds(db: db, runId: runId) {
            seconds[second.campaignId, default: []].append(
                Second(offset: second.offset, requests: second.requests, rateLimited: second.rateLimited))
        }
        let rateCampaigns = Set(limits.keys).union(seconds.keys).sorted()
        return rateCampaigns.map { CampaignRate(campaignId: $0, rateLimit: limits[$0], seconds: seconds[$0] ?? []) }
    }

    /// Cost: this run's accepted retries (carried-over ones were billed in their own run).
    private static func costEstimate(db: PGConnection, runId: Int64, model: CostModel) async throws -> CostEstimate {
        let counts = try await ReportReads.chargeCounts(
            db: db, runId: runId, localPrefix: model.localPrefix, freeCodes: Array(model.freeCodes))
        return CostEstimate(model: model, localCharged: counts.local, foreignCharged: counts.foreign, notCharged: counts.free)
    }

    /// The journal rows that need a person, one per message, in the category that matters most.
    private static func attentionRows(db: PGConnection, runId: Int64, startedAt: Date) async throws -> [Attention] {
        let permanent = ErrorPolicy.default.permanent
        var rows: [Attention] = []
        for row in try await ReportReads.attentionRows(db: db, runId: runId) {
            let category: Attention.Category
            if row.writeState == .conflict {
                category = .writeConflict
            } else if row.writeState == .refused {
                category = .writeRefused
            } else {
                switch row.outcome {
                case .retried: category = permanent.contains(row.code) ? .permanentError : .failedAgain
                case .exhausted: category = .exhausted
                case .notFound: category = .notFound
                case .rejected: category = .rejected
                default: category = .conflict
                }
            }
            rows.append(
                Attention(
                    category: category, campaignId: row.campaignId, messageId: row.messageId, batchId: row.batchId,
                    rowKey: row.rowKey, recipientMasked: row.recipientMasked, code: row.code, detail: row.detail,
                    retryCount: row.retryCount, writtenBack: category != .writeConflict && row.writeState == .written))
        }
        // Messages this run stopped polling: still pending 48 h after their retry.
        for row in try await ReportReads.neverFinalRows(
            db: db, runId: runId, startedAt: startedAt, window: SettingDefaults.neverFinalAfter)
        {
            rows.append(
                Attention(
                    category: .neverFinal, campaignId: row.campaignId, messageId: row.messageId, batchId: row.batchId,
                    rowKey: row.rowKey, recipientMasked: row.recipientMasked, code: "",
                    detail: "last status: " + row.lastStatus, retryCount: row.retryCount, writtenBack: true))
        }
        return rows
    }
}

extension Optional {
    func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let self else { return nil }
        return try await transform(self)
    }
}
