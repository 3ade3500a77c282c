import Foundation
import LibPQ
import RetryCore

/// `postman-retry plan`: what `run` would do, without calling Postman or writing anything.
public struct Plan: Sendable, Codable {
    public struct Campaign: Sendable, Codable {
        public var campaignId: String
        public var selected: Int
        public var carriedOver: Int
        public var skipped: [String: Int]
        public var rateLimit: Int
        /// Retries plus at least one round of reads (a list sweep or single reads, whichever is cheaper).
        public var apiCalls: Int
        public var minimumSeconds: Double

        enum CodingKeys: String, CodingKey {
            case campaignId = "campaign_id", selected, carriedOver = "carried_over", skipped
            case rateLimit = "rate_limit", apiCalls = "api_calls", minimumSeconds = "minimum_seconds"
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
        case campaigns, selected, skipped, carriedOver = "carried_over", skippedByReason = "skipped_by_reason"
        case apiCalls = "api_calls", minimumWallSeconds = "minimum_wall_seconds"
    }

    public static func compute(db: PGConnection, settings: RunSettings, now: Date = Date()) async throws -> Plan {
        let selector = Selector(table: settings.table, scope: settings.scope, now: now)
        let counts = try await selector.scan(db, rules: settings.rules) { _, _ in }
        let store = RunStore(db: db, table: settings.table)
        var carried: [String: Int] = [:]
        if try await Migrator().pending(db).isEmpty {
            let rows = try await db.query(
                """
                SELECT campaign_id, count(*) AS n FROM \(qualified: [Migrator.schema, "journal"])
                WHERE result = 'pending' AND superseded_by_run IS NULL AND never_final = false
                  AND accepted_at > now() - interval '48 hours'
                  AND (\(settings.scope.campaigns.isEmpty) OR campaign_id = ANY(\(settings.scope.campaigns)::text[]))
                GROUP BY 1
                """)
            for row in rows { carried[try row.decode("campaign_id")] = try row.decode("n") }
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
            let calls = count.selected + (toPoll > 0 ? min(toPoll, pages) : 0)
            let rate = settings.rateLimit(for: id)
            for (reason, n) in count.skipped { reasons[reason, default: 0] += n }
            campaigns.append(
                Campaign(
                    campaignId: id, selected: count.selected, carriedOver: carriedOver, skipped: count.skipped,
                    rateLimit: rate, apiCalls: calls, minimumSeconds: Double(calls) / Double(rate)))
        }
        let slowest = campaigns.map(\.minimumSeconds).max() ?? 0
        return Plan(
            campaigns: campaigns, selected: campaigns.map(\.selected).reduce(0, +),
            carriedOver: campaigns.map(\.carriedOver).reduce(0, +), skipped: reasons.values.reduce(0, +),
            skippedByReason: reasons, apiCalls: campaigns.map(\.apiCalls).reduce(0, +),
            minimumWallSeconds: slowest > 0 ? slowest + 1 : 0)
    }

    /// A table for people.
    public var text: String {
        var lines: [String] = []
        let reasons = SkipReason.allCases.map(\.rawValue)
        lines.append(
            (["campaign", "selected", "carried"] + reasons + ["tps", "calls", "min_s"]).joined(separator: "\t"))
        for c in campaigns {
            let cells = [c.campaignId, String(c.selected), String(c.carriedOver)]
                + reasons.map { String(c.skipped[$0] ?? 0) }
                + [String(c.rateLimit), String(c.apiCalls), String(format: "%.1f", c.minimumSeconds)]
            lines.append(cells.joined(separator: "\t"))
        }
        lines.append(
            "total: \(selected) selected, \(carriedOver) carried over, \(skipped) skipped; \(apiCalls) API calls at least; "
                + "minimum wall time \(String(format: "%.1f", minimumWallSeconds)) s")
        return lines.joined(separator: "\n")
    }
}
