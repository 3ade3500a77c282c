import Foundation
import LibPQ
import RetryCore
import RetryJob
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
        _ = try await db.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        do {
            let report = try await loadInSnapshot(db: db, runId: runId, cost: model, now: now)
            _ = try await db.query("COMMIT")
            return report
        } catch {
            _ = try? await db.query("ROLLBACK")
            throw error
        }
    }

    /// The newest run's id, or nil when there is none.
    public static func latestRunId(db: PGConnection) async throws -> Int64? {
        try await db.query("SELECT max(run_id) AS id FROM \(qualified: [Migrator.schema, "runs"])")[0].optional("id")
    }

    private static func loadInSnapshot(db: PGConnection, runId: Int64, cost model: CostModel, now: Date) async throws
        -> RunReport
    {
        let runRows = try await db.query(
            """
            SELECT agency_table, attempts, last_error, started_at,
                   EXTRACT(EPOCH FROM (COALESCE(finished_at, now()) - started_at))::float8 AS duration
            FROM \(qualified: [Migrator.schema, "runs"]) WHERE run_id = \(runId)
            """)
        guard let run = runRows.first else { throw JobError(.usage, "there is no run \(runId) in postman_retry.runs") }
        let summary = try await RunSummary.load(db: db, runId: runId)
        let startedAt: Date = try run.decode("started_at")
        let malformed = try await malformedRows(db: db, runId: runId)
        let malformedAttention = malformed.map {
            Attention(
                category: .malformed, campaignId: "", messageId: "", batchId: "", rowKey: $0.rowKey, recipientMasked: "",
                code: $0.field, detail: $0.problem, retryCount: nil, writtenBack: false)
        }
        return RunReport(
            summary: summary, previous: try await previousCompleted(db: db, runId: runId),
            agencyTable: try run.decode("agency_table"), processes: try run.decode("attempts"),
            lastError: try run.optional("last_error"), durationSeconds: try run.optional("duration"),
            rates: try await campaignRates(db: db, runId: runId),
            secondsToOutcome: try await secondsToOutcome(db: db, runId: runId),
            failedByCode: try await failedByCode(db: db, runId: runId),
            rejectedByCode: try await rejectedByCode(db: db, runId: runId),
            attention: try await attentionRows(db: db, runId: runId, startedAt: startedAt) + malformedAttention,
            malformed: malformed, unknownStatuses: try await unknownStatuses(db: db, runId: runId),
            cost: try await costEstimate(db: db, runId: runId, model: model), generatedAt: now)
    }

    private static var journal: PGQuery { "\(qualified: [Migrator.schema, "journal"])" }

    /// The latest completed run before `runId`, for the comparison.
    private static func previousCompleted(db: PGConnection, runId: Int64) async throws -> RunSummary? {
        let previousId: Int64? = try await db.query(
            """
            SELECT max(run_id) AS id FROM \(qualified: [Migrator.schema, "runs"]) WHERE run_id < \(runId) AND status = 'completed'
            """)[0].optional("id")
        return try await previousId.asyncMap { try await RunSummary.load(db: db, runId: $0) }
    }

    /// Request rate per second and campaign, with the limit each campaign ran under.
    private static func campaignRates(db: PGConnection, runId: Int64) async throws -> [CampaignRate] {
        let schema = Migrator.schema
        var limits: [String: Int] = [:]
        for row in try await db.query(
            "SELECT campaign_id, rate_limit FROM \(qualified: [schema, "run_campaigns"]) WHERE run_id = \(runId)")
        {
            limits[try row.decode("campaign_id")] = try row.decode("rate_limit")
        }
        var seconds: [String: [Second]] = [:]
        for row in try await db.query(
            """
            SELECT campaign_id, requests, rate_limited,
                   (EXTRACT(EPOCH FROM second) - min(EXTRACT(EPOCH FROM second)) OVER ())::bigint AS offset_s
            FROM \(qualified: [schema, "request_seconds"]) WHERE run_id = \(runId) ORDER BY second
            """)
        {
            seconds[try row.decode("campaign_id"), default: []].append(
                Second(offset: try row.decode("offset_s"), requests: try row.decode("requests"),
                       rateLimited: try row.decode("rate_limited")))
        }
        let rateCampaigns = Set(limits.keys).union(seconds.keys).sorted()
        return rateCampaigns.map { CampaignRate(campaignId: $0, rateLimit: limits[$0], seconds: seconds[$0] ?? []) }
    }

    /// Seconds from accepted retry to final status, for this run's own retries, ascending.
    private static func secondsToOutcome(db: PGConnection, runId: Int64) async throws -> [Double] {
        let outcomeRows = try await db.query(
            """
            SELECT EXTRACT(EPOCH FROM (final_at - accepted_at))::float8 AS s FROM \(fragment: journal)
            WHERE run_id = \(runId) AND origin = 'selected' AND outcome = 'retried' AND result IN ('succeeded', 'failed')
              AND final_at IS NOT NULL AND accepted_at IS NOT NULL
            ORDER BY 1
            """)
        return try outcomeRows.map { max(0, try $0.decode("s", as: Double.self)) }
    }

    /// Counted like RunSummary counts `failed` (selected rows only), so the codes add up to it.
    private static func failedByCode(db: PGConnection, runId: Int64) async throws -> [String: Int] {
        var failedByCode: [String: Int] = [:]
        for row in try await db.query(
            """
            SELECT COALESCE(newest_error, '') AS code, count(*) AS n FROM \(fragment: journal)
            WHERE run_id = \(runId) AND origin = 'selected' AND outcome = 'retried' AND result = 'failed' GROUP BY 1
            """)
        {
            failedByCode[try row.decode("code")] = try row.decode("n")
        }
        return failedByCode
    }

    private static func rejectedByCode(db: PGConnection, runId: Int64) async throws -> [String: Int] {
        var rejectedByCode: [String: Int] = [:]
        for row in try await db.query(
            """
            SELECT COALESCE(postman_code, 'HTTP ' || COALESCE(http_status::text, '?')) AS code, count(*) AS n
            FROM \(fragment: journal) WHERE run_id = \(runId) AND origin = 'selected' AND outcome = 'rejected' GROUP BY 1
            """)
        {
            rejectedByCode[try row.decode("code")] = try row.decode("n")
        }
        return rejectedByCode
    }

    /// Cost: this run's accepted retries (carried-over ones were billed in their own run).
    private static func costEstimate(db: PGConnection, runId: Int64, model: CostModel) async throws -> CostEstimate {
        let free = Array(model.freeCodes)
        var cost = CostEstimate(model: model, localCharged: 0, foreignCharged: 0, notCharged: 0)
        for row in try await db.query(
            """
            SELECT starts_with(recipient_masked, \(model.localPrefix)) AS local,
                   (result = 'failed' AND newest_error = ANY(\(free)::text[])) IS TRUE AS free, count(*) AS n
            FROM \(fragment: journal) WHERE run_id = \(runId) AND origin = 'selected' AND outcome = 'retried'
            GROUP BY 1, 2
            """)
        {
            let n: Int = try row.decode("n")
            if try row.decode("free", as: Bool.self) {
                cost.notCharged += n
            } else if try row.decode("local", as: Bool.self) {
                cost.localCharged += n
            } else {
                cost.foreignCharged += n
            }
        }
        return cost
    }

    private static func malformedRows(db: PGConnection, runId: Int64) async throws -> [Malformed] {
        var malformed: [Malformed] = []
        for row in try await db.query(
            """
            SELECT row_key, field, problem FROM \(qualified: [Migrator.schema, "malformed_rows"]) WHERE run_id = \(runId)
            ORDER BY row_key, field
            """)
        {
            malformed.append(
                Malformed(rowKey: try row.decode("row_key"), field: try row.decode("field"), problem: try row.decode("problem")))
        }
        return malformed
    }

    private static func unknownStatuses(db: PGConnection, runId: Int64) async throws -> [UnknownStatus] {
        var unknown: [UnknownStatus] = []
        for row in try await db.query(
            """
            SELECT campaign_id, message_id, unknown_status FROM \(fragment: journal)
            WHERE run_id = \(runId) AND unknown_status IS NOT NULL ORDER BY campaign_id, message_id
            """)
        {
            unknown.append(
                UnknownStatus(
                    campaignId: try row.decode("campaign_id"), messageId: try row.decode("message_id"),
                    status: try row.decode("unknown_status")))
        }
        return unknown
    }

    /// The journal rows that need a person, one per message, in the category that matters most.
    private static func attentionRows(db: PGConnection, runId: Int64, startedAt: Date) async throws -> [Attention] {
        let schema = Migrator.schema
        let journal: PGQuery = "\(qualified: [schema, "journal"])"
        let permanent = Array(ErrorPolicy.default.permanent)
        var rows: [Attention] = []
        let selected = try await db.query(
            """
            SELECT campaign_id, message_id, COALESCE(batch_id, '') AS batch_id, row_key, recipient_masked,
                   outcome, result, write_state, COALESCE(target_retry_count, snap_retry_count) AS retry_count,
                   CASE WHEN outcome = 'retried' THEN COALESCE(newest_error, '') ELSE COALESCE(postman_code, '') END AS code,
                   COALESCE(postman_message, '') AS detail
            FROM \(fragment: journal)
            WHERE run_id = \(runId) AND (
                write_state = 'conflict'
                OR (outcome = 'retried' AND result = 'failed')
                OR outcome IN ('exhausted', 'not_found', 'rejected', 'conflict'))
            ORDER BY campaign_id, row_created_at, row_key
            """)
        for row in selected {
            let outcome: String = try row.decode("outcome")
            let code: String = try row.decode("code")
            let category: Attention.Category
            if try row.decode("write_state", as: String.self) == "conflict" {
                category = .writeConflict
            } else {
                switch outcome {
                case "retried": category = permanent.contains(code) ? .permanentError : .failedAgain
                case "exhausted": category = .exhausted
                case "not_found": category = .notFound
                case "rejected": category = .rejected
                default: category = .conflict
                }
            }
            rows.append(
                Attention(
                    category: category, campaignId: try row.decode("campaign_id"), messageId: try row.decode("message_id"),
                    batchId: try row.decode("batch_id"), rowKey: try row.decode("row_key"),
                    recipientMasked: try row.decode("recipient_masked"), code: code, detail: try row.decode("detail"),
                    retryCount: try row.optional("retry_count"), writtenBack: false))
            if category != .writeConflict, try row.decode("write_state", as: String.self) == "written" {
                rows[rows.count - 1].writtenBack = true
            }
        }
        // Messages this run stopped polling: still pending 48 h after their retry (marked during this
        // run's carry-over, so their retry is between 48 h before the previous run and 48 h before this one).
        let neverFinalAfter = SettingDefaults.neverFinalAfter
        let window = Int(neverFinalAfter.components.seconds)
        let stale = try await db.query(
            """
            SELECT campaign_id, message_id, COALESCE(batch_id, '') AS batch_id, row_key, recipient_masked,
                   COALESCE(last_status, '') AS last_status, snap_retry_count
            FROM \(fragment: journal) j
            WHERE never_final AND superseded_by_run IS NULL AND run_id < \(runId)
              AND accepted_at < \(startedAt)::timestamptz - make_interval(secs => \(window))
              AND accepted_at >= COALESCE(
                  (SELECT max(started_at) FROM \(qualified: [schema, "runs"]) WHERE run_id < \(runId)),
                  '-infinity'::timestamptz) - make_interval(secs => \(window))
            ORDER BY campaign_id, message_id
            """)
        for row in stale {
            rows.append(
                Attention(
                    category: .neverFinal, campaignId: try row.decode("campaign_id"), messageId: try row.decode("message_id"),
                    batchId: try row.decode("batch_id"), rowKey: try row.decode("row_key"),
                    recipientMasked: try row.decode("recipient_masked"), code: "",
                    detail: "last status: " + (try row.decode("last_status", as: String.self)),
                    retryCount: try row.optional("snap_retry_count"), writtenBack: true))
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
