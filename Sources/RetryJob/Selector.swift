import Foundation
import LibPQ
import RetryCore

/// Streams the failed rows in scope out of the agency table, oldest first, a page at a time (keyset
/// pagination over the recommended partial index), so memory does not grow with the table.
struct Selector: Sendable {
    let table: AgencyTable
    let scope: RunScope
    let now: Date
    var pageSize = 1000

    func pageQuery(after cursor: (createdAt: String, key: String)?) -> PGQuery {
        let t = table
        var query: PGQuery = """
            SELECT \(fragment: t.column(t.key))::text AS key, \(fragment: t.column(t.messageId))::text AS message_id,
                   \(fragment: t.column(t.campaignId))::text AS campaign_id,
                   \(fragment: t.batchId.map { t.column($0) } ?? "NULL")::text AS batch_id,
                   \(fragment: t.column(t.recipient))::text AS recipient,
                   \(fragment: t.isOtp.map { t.column($0) } ?? "false")::boolean AS is_otp,
                   \(fragment: t.column(t.status))::text AS status,
                   \(fragment: t.column(t.retryCount))::bigint AS retry_count,
                   \(fragment: t.column(t.errorCode))::text AS error_code,
                   \(fragment: t.column(t.createdAt))::text AS created_at,
                   \(fragment: t.column(t.updatedAt))::text AS updated_at
            FROM \(fragment: t.tableSQL) a
            WHERE \(fragment: t.column(t.status)) = 'failure'
              AND \(fragment: t.column(t.createdAt)) >= \(scope.lowerBound(now: now))::timestamptz
            """
        if let until = scope.until { query.append(" AND \(fragment: t.column(t.createdAt)) < \(until)::timestamptz") }
        if !scope.campaigns.isEmpty {
            query.append(" AND \(fragment: t.column(t.campaignId)) = ANY(\(scope.campaigns)::text[])")
        }
        if let cursor {
            query.append(
                " AND (\(fragment: t.column(t.createdAt)), \(fragment: t.column(t.key))) > (\(cursor.createdAt)::timestamptz, \(cursor.key))"
            )
        }
        query.append(
            " ORDER BY \(fragment: t.column(t.createdAt)), \(fragment: t.column(t.key)) LIMIT \(pageSize)")
        return query
    }

    /// Calls `body` with each page until the table is exhausted or `body` returns false.
    func forEachPage(_ db: PGConnection, _ body: ([CandidateRow]) async throws -> Bool) async throws {
        var cursor: (createdAt: String, key: String)?
        while true {
            let rows = try await db.query(pageQuery(after: cursor))
            if rows.isEmpty { return }
            var page: [CandidateRow] = []
            page.reserveCapacity(rows.count)
            for row in rows {
                page.append(try Self.candidate(row))
            }
            guard try await body(page) else { return }
            if rows.count < pageSize { return }
            let last = page[page.count - 1]
            cursor = (last.createdAt, last.key)
        }
    }

    static func candidate(_ row: PGRow) throws -> CandidateRow {
        CandidateRow(
            key: try row.decode("key"), messageId: try row.optional("message_id"),
            campaignId: try row.optional("campaign_id"), batchId: try row.optional("batch_id"),
            recipient: try row.optional("recipient"), isOtp: try row.optional("is_otp"),
            status: try row.decode("status"), retryCount: try row.optional("retry_count"),
            errorCode: try row.optional("error_code"), createdAt: try row.decode("created_at"),
            updatedAt: try row.optional("updated_at"))
    }
}

/// Counts of a selection, by campaign.
public struct SelectionCounts: Sendable, Codable, Equatable {
    public var selected: Int = 0
    public var skipped: [String: Int] = [:]  // by SkipReason raw value
    public init() {}
    public var skippedTotal: Int { skipped.values.reduce(0, +) }
}

extension Selector {
    typealias MalformedRow = (key: String, field: String, problem: String)

    /// Classifies every failed row in scope with `rules`, oldest first, keeping at most `limit`
    /// selected (counting `alreadySelected`); rows in `exclude` (already journaled) are ignored.
    /// `onPage` receives each page's selected and malformed rows; the counts by campaign come back.
    func scan(
        _ db: PGConnection, rules: SelectionRules, alreadySelected: Int = 0, exclude: Set<String> = [],
        onPage: ([CandidateRow], [MalformedRow]) async throws -> Void
    ) async throws -> [String: SelectionCounts] {
        var selectedSoFar = alreadySelected
        var counts: [String: SelectionCounts] = [:]
        try await forEachPage(db) { page in
            var selected: [CandidateRow] = []
            var malformed: [MalformedRow] = []
            for row in page {
                if let id = row.messageId, exclude.contains(id) { continue }
                let campaign = row.campaignId ?? ""
                switch rules.classify(row) {
                case .selected:
                    if let limit = scope.limit, selectedSoFar >= limit { continue }
                    selectedSoFar += 1
                    selected.append(row)
                    counts[campaign, default: SelectionCounts()].selected += 1
                case .skipped(let reason, let field, let problem):
                    counts[campaign, default: SelectionCounts()].skipped[reason.rawValue, default: 0] += 1
                    if reason == .malformed, let field { malformed.append((row.key, field, problem ?? "unusable")) }
                }
            }
            try await onPage(selected, malformed)
            return true
        }
        return counts
    }
}
