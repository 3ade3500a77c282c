import Foundation
import LibPQ
import RetryCore
import RetryJournal
import RetrySettings

/// `postman-retry plan`: what `run` would do, without calling Postman or writing anything.
public struct Plan: Sendable, Codable {
    public struct Campaign: Sendable, Codable {
        public var campaignId: String
        public var selected: Int
        public var carriedOver: Int
        public var skipped: [String: Int]
        public var rateLimit: Int
        /// How Postman's state is learnt before the first retry: "pages" (the campaign's list, 1,000 a call)
        /// or "single reads", whichever the table's size says is cheaper (the run decides again from what it sees).
        public var readsBeforeRetry: String
        /// Batches that may go in one call: every failed member of the batch in the table is selected
        /// (the run confirms against Postman's batch pages before calling).
        public var wholeBatches: [WholeBatchCandidate]
        /// Looks before the first retry, retries (one per whole batch), and at least one round of reads
        /// (a list sweep or single reads, whichever is cheaper).
        public var apiCalls: Int
        public var minimumSeconds: Double

        enum CodingKeys: String, CodingKey {
            case campaignId = "campaign_id"
            case selected
            case carriedOver = "carried_over"
            case skipped
            case rateLimit = "rate_limit"
            case readsBeforeRetry = "reads_before_retry"
            case wholeBatches = "whole_batches"
            case apiCalls = "api_calls"
            case minimumSeconds = "minimum_seconds"
        }
    }

    public struct WholeBatchCandidate: Sendable, Codable {
        public var batchId: String
        public var members: Int
        /// Single retries the batch call would save (members - 1).
        public var callsSaved: Int
        enum CodingKeys: String, CodingKey {
            case batchId = "batch_id"
            case members
            case callsSaved = "calls_saved"
        }
    }

    public var campaigns: [Campaign]
    public var selected: Int
    public var carriedOver: Int
    public var skipped: Int
    public var skippedByReason: [String: Int]
    public var apiCalls: Int
    /// Campaigns run side by side, so the run takes as long as its slowest campaign (plus the one
    /// second it waits after taking the lock).
    public var minimumWallSeconds: Double

    enum CodingKeys: String, CodingKey {
        case campaigns, selected, skipped
        case carriedOver = "carried_over"
        case skippedByReason = "skipped_by_reason"
        case apiCalls = "api_calls"
        case minimumWallSeconds = "minimum_wall_seconds"
    }

    public static func compute(db: PGConnection, settings: RunSettings, now: Date = Date()) async throws -> Plan {
        let selector = Selector(table: settings.table, scope: settings.scope, now: now)
        var selectedByBatch: [String: [String: Int]] = [:]
        let counts = try await selector.scan(db, rules: settings.rules) { rows, _ in
            for row in rows {
                if let batch = row.batchId, !batch.isEmpty, let campaign = row.campaignId {
                    selectedByBatch[campaign, default: [:]][batch, default: 0] += 1
                }
            }
            // A dry run records nothing: copies of a message id (a table without a UNIQUE message id) on one
            // page of 1,000 rows are named `malformed` by the scan, copies further apart only by `run`.
            return []
        }
        let candidates =
            settings.wholeBatchRetries
            ? try await wholeBatchCandidates(db: db, table: settings.table, selectedByBatch: selectedByBatch) : [:]
        let store = RunStore(db: db, table: settings.table)
        var carried: [String: Int] = [:]
        if try await Migrator().pending(db).isEmpty {
            carried = try await HistoryReads.carriedOverCounts(db: db, campaigns: settings.scope.campaigns)
        }
        let ids = Set(counts.keys).union(carried.keys).sorted()
        let tableCounts = try await store.messageCounts(campaigns: ids)
        var campaigns: [Campaign] = []
        var reasons = Dictionary(uniqueKeysWithValues: SkipReason.allCases.map { ($0.rawValue, 0) })
        for id in ids {
            let count = counts[id] ?? SelectionCounts()
            let carriedOver = carried[id] ?? 0
            let toPoll = count.selected + carriedOver
            let pages = max(1, ((tableCounts[id] ?? toPoll) + 999) / 1000)
            let whole = candidates[id] ?? []
            let preRead = count.selected > 0 ? min(count.selected, pages) : 0
            let retries = count.selected - whole.map(\.callsSaved).reduce(0, +)
            let calls = preRead + retries + (toPoll > 0 ? min(toPoll, pages) : 0)
            let rate = settings.rateLimit(for: id)
            for (reason, n) in count.skipped { reasons[reason, default: 0] += n }
            campaigns.append(
                Campaign(
                    campaignId: id, selected: count.selected, carriedOver: carriedOver, skipped: count.skipped,
                    rateLimit: rate, readsBeforeRetry: count.selected >= pages && count.selected > 1 ? "pages" : "single reads",
                    wholeBatches: whole, apiCalls: calls, minimumSeconds: Double(calls) / Double(rate)))
        }
        let slowest = campaigns.map(\.minimumSeconds).max() ?? 0
        return Plan(
            campaigns: campaigns, selected: campaigns.map(\.selected).reduce(0, +),
            carriedOver: campaigns.map(\.carriedOver).reduce(0, +), skipped: reasons.values.reduce(0, +),
            skippedByReason: reasons, apiCalls: campaigns.map(\.apiCalls).reduce(0, +),
            minimumWallSeconds: slowest > 0 ? slowest + 1 : 0)
    }

    /// Batches with at least `WholeBatch.minimumMembers` selected members whose every failed row in the
    /// table (in scope or not) is selected: the candidates for one whole-batch call.
    static func wholeBatchCandidates(db: PGConnection, table t: AgencyTable, selectedByBatch: [String: [String: Int]])
        async throws -> [String: [WholeBatchCandidate]]
    {
        guard let batchColumn = t.batchId else { return [:] }
        var pairs: [(campaign: String, batch: String, selected: Int)] = []
        for (campaign, batches) in selectedByBatch {
            for (batch, selected) in batches where selected >= WholeBatch.minimumMembers {
                pairs.append((campaign, batch, selected))
            }
        }
        guard !pairs.isEmpty else { return [:] }
        // Every campaign's batches in one statement: one pass over the failed rows, where one statement per
        // campaign read the table once per campaign (100 campaigns on a 2,000,000-row table: 11 s of
        // PostgreSQL's time; docs/benchmarks.md).
        let rows = try await db.query(
            """
            SELECT \(fragment: t.column(t.campaignId))::text AS campaign, \(fragment: t.column(batchColumn))::text AS batch,
                   count(*) AS n
            FROM \(fragment: t.tableSQL) a
            WHERE \(fragment: t.column(t.status)) = 'failure'
              AND (\(fragment: t.column(t.campaignId))::text, \(fragment: t.column(batchColumn))::text) IN
                  (SELECT c, b FROM unnest(\(pairs.map(\.campaign))::text[], \(pairs.map(\.batch))::text[]) AS u(c, b))
            GROUP BY 1, 2
            """)
        var failedInTable: [String: [String: Int]] = [:]
        for row in rows {
            failedInTable[try row.decode("campaign", as: String.self), default: [:]][try row.decode("batch")] =
                try row.decode("n", as: Int.self)
        }
        var result: [String: [WholeBatchCandidate]] = [:]
        for pair in pairs where failedInTable[pair.campaign]?[pair.batch] == pair.selected {
            result[pair.campaign, default: []].append(
                WholeBatchCandidate(batchId: pair.batch, members: pair.selected, callsSaved: pair.selected - 1))
        }
        for campaign in result.keys { result[campaign]?.sort { $0.batchId < $1.batchId } }
        return result
    }

    /// A table for people.
    public var text: String {
        var lines: [String] = []
        let reasons = SkipReason.allCases.map(\.rawValue)
        lines.append(
            (["campaign", "selected", "carried"] + reasons + ["tps", "calls", "min_s"]).joined(separator: "\t"))
        for c in campaigns {
            let cells =
                [c.campaignId, String(c.selected), String(c.carriedOver)]
                + reasons.map { String(c.skipped[$0] ?? 0) }
                + [String(c.rateLimit), String(c.apiCalls), String(format: "%.1f", c.minimumSeconds)]
            lines.append(cells.joined(separator: "\t"))
        }
        for c in campaigns {
            if c.selected > 0 {
                lines.append("\(c.campaignId): Postman's state read by \(c.readsBeforeRetry) before the first retry")
            }
            for batch in c.wholeBatches {
                lines.append(
                    "\(c.campaignId): batch \(batch.batchId) may go whole: \(batch.members) members in one call, \(batch.callsSaved) calls saved "
                        + "(confirmed against Postman's batch pages at run time)")
            }
        }
        lines.append(
            "total: \(selected) selected, \(carriedOver) carried over, \(skipped) skipped; \(apiCalls) API calls at least; "
                + "minimum wall time \(String(format: "%.1f", minimumWallSeconds)) s")
        return lines.joined(separator: "\n")
    }
}
