import Foundation
import LibPQ
import RetryCore
import RetrySettings

/// Streams the failed rows in scope out of the agency table, oldest first, a page at a time (keyset
/// pagination over the recommended partial index), so memory does not grow with the table.
///
/// Bad values never stop the selection: a NULL or undecodable value is read as it is and left for
/// the rules to name (`malformed`). In a `SQL_ASCII` database, where text columns may hold any bytes,
/// the text columns are read as hex and checked for UTF-8 here: asked for text, PostgreSQL would
/// refuse the whole page (`invalid byte sequence for encoding "UTF8"`) for one bad byte in one row.
struct Selector: Sendable {
    let table: AgencyTable
    let scope: RunScope
    let now: Date
    var pageSize = 1000

    /// Where the next page starts: after this `(created_at, key)`.
    struct Cursor: Sendable, Equatable {
        enum Key: Sendable, Equatable {
            case text(String)
            /// The key's bytes (hex) when they are not UTF-8: sent back byte for byte.
            case bytes(hex: String)
            /// A NULL key sorts last among equal `created_at`; rows after it come from later times.
            case null
        }
        var createdAt: String
        var key: Key
    }

    /// The text columns the job reads, by the name the rules and the report use for them.
    static let textColumns = ["key", "message_id", "campaign_id", "batch_id", "recipient", "error_code"]

    /// `rawBytes`: read the text columns as hex of their bytes (for `SQL_ASCII` databases).
    func pageQuery(after cursor: Cursor?, rawBytes: Bool = false) -> PGQuery {
        let t = table
        func text(_ column: PGQuery) -> PGQuery {
            rawBytes
                ? "encode(convert_to(\(fragment: column)::text, getdatabaseencoding()), 'hex')"
                : "\(fragment: column)::text"
        }
        var query: PGQuery = """
            SELECT \(fragment: text(t.column(t.key))) AS key, \(fragment: text(t.column(t.messageId))) AS message_id,
                   \(fragment: text(t.column(t.campaignId))) AS campaign_id,
                   \(fragment: text(t.batchId.map { t.column($0) } ?? "NULL")) AS batch_id,
                   \(fragment: text(t.column(t.recipient))) AS recipient,
                   \(fragment: t.isOtp.map { t.column($0) } ?? "false")::boolean AS is_otp,
                   \(fragment: t.column(t.status))::text AS status,
                   \(fragment: t.column(t.retryCount))::bigint AS retry_count,
                   \(fragment: text(t.column(t.errorCode))) AS error_code,
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
            let key: PGQuery =
                switch cursor.key {
                case .text(let text): "\(text)"
                case .bytes(let hex): "convert_from(decode(\(hex), 'hex'), getdatabaseencoding())"
                case .null: "NULL"
                }
            query.append(
                " AND (\(fragment: t.column(t.createdAt)), \(fragment: t.column(t.key))) > (\(cursor.createdAt)::timestamptz, \(fragment: key))"
            )
        }
        query.append(
            " ORDER BY \(fragment: t.column(t.createdAt)), \(fragment: t.column(t.key)) LIMIT \(pageSize)")
        return query
    }

    /// Whether text must be read as bytes: only a `SQL_ASCII` database stores text it never checked.
    static func readsRawBytes(_ db: PGConnection) async throws -> Bool {
        let encoding: String = try await db.query("SELECT current_setting('server_encoding') AS encoding")[0].decode("encoding")
        return encoding == "SQL_ASCII"
    }

    /// Calls `body` with each page until the table is exhausted or `body` returns false.
    func forEachPage(_ db: PGConnection, _ body: ([CandidateRow]) async throws -> Bool) async throws {
        let rawBytes = try await Self.readsRawBytes(db)
        var cursor: Cursor?
        while true {
            let rows = try await db.query(pageQuery(after: cursor, rawBytes: rawBytes))
            if rows.isEmpty { return }
            var page: [CandidateRow] = []
            page.reserveCapacity(rows.count)
            var last: Cursor?
            for row in rows {
                let (candidate, position) = try Self.candidate(row, rawBytes: rawBytes)
                page.append(candidate)
                last = position
            }
            guard try await body(page) else { return }
            if rows.count < pageSize { return }
            // Rows with a NULL key and the same created_at as the last one, beyond this page, are
            // not seen (NULL compares with nothing); they could not be retried anyway.
            cursor = last
        }
    }

    /// A row of `pageQuery`, and the cursor that pages past it.
    static func candidate(_ row: PGRow, rawBytes: Bool = false) throws -> (CandidateRow, Cursor) {
        var unreadable: FieldProblem?
        var cursorKey = Cursor.Key.null
        /// A text column: as read, or (raw bytes) decoded from hex and checked to be UTF-8.
        func text(_ name: String) throws -> String? {
            guard let value: String = try row.optional(name) else { return nil }
            guard rawBytes else { return value }
            guard let bytes = hexBytes(value) else {
                throw PGError(.decoding, "column \"\(name)\" is not the hex this query asked for")
            }
            if let decoded = String(validating: bytes, as: UTF8.self) { return decoded }
            if unreadable == nil {
                let offset = min(utf8ErrorOffset(bytes), bytes.count - 1)
                unreadable = FieldProblem(
                    field: name,
                    problem: "is not UTF-8 text (byte \(offset + 1) of \(bytes.count) is 0x"
                        + String(bytes[offset], radix: 16, uppercase: true) + ")")
            }
            if name == "key" { cursorKey = .bytes(hex: value) }
            return String(decoding: bytes, as: UTF8.self)
        }
        let key = try text("key")
        if let key {
            if case .null = cursorKey { cursorKey = .text(key) }
        } else {
            unreadable = FieldProblem(field: "key", problem: "is NULL, so the row cannot be named or written safely")
        }
        let candidate = CandidateRow(
            key: key ?? "NULL", messageId: try text("message_id"),
            campaignId: try text("campaign_id"), batchId: try text("batch_id"),
            recipient: try text("recipient"), isOtp: try row.optional("is_otp"),
            status: try row.decode("status"), retryCount: try row.optional("retry_count"),
            errorCode: try text("error_code"), createdAt: try row.decode("created_at"),
            updatedAt: try row.optional("updated_at"), unreadable: unreadable)
        return (candidate, Cursor(createdAt: candidate.createdAt, key: cursorKey))
    }

    static func hexBytes(_ hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = value(digits[index]), let low = value(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    /// The offset of the first byte at which `bytes` stops being UTF-8 (`bytes.count` if it never does).
    static func utf8ErrorOffset(_ bytes: [UInt8]) -> Int {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        var offset = 0
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): offset += UTF8.width(scalar)
            case .emptyInput: return offset
            case .error: return offset
            }
        }
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
    /// selected (counting `alreadySelected`). `journaled` tells, for a page's message ids, which the run
    /// already works and from which row (keyed by the id's bytes: PostgreSQL compares ids byte for byte,
    /// Swift's `==` by canonical equivalence); it is asked before each page, so it sees the pages before.
    /// The run's own rows are not counted again. A row selected for an id the run already works from
    /// another row (in the journal, or earlier in the page) is a duplicate, counted `malformed`, whether
    /// or not `--limit` is reached. `onPage` receives each page's selected and malformed rows and returns
    /// the selected rows it could not record (a concurrent change: counted as `journaled` would have). The
    /// counts by campaign come back.
    func scan(
        _ db: PGConnection, rules: SelectionRules, alreadySelected: Int = 0,
        journaled: ([String]) async throws -> [[UInt8]: String] = { _ in [:] },
        onPage: ([CandidateRow], [MalformedRow]) async throws -> [(row: CandidateRow, twinKey: String)]
    ) async throws -> [String: SelectionCounts] {
        var selectedSoFar = alreadySelected
        var counts: [String: SelectionCounts] = [:]
        try await forEachPage(db) { page in
            var selected: [CandidateRow] = []
            var malformed: [MalformedRow] = []
            var known = try await journaled(page.compactMap(\.messageId))
            for row in page {
                // An over-long campaign id (a malformed row's) is counted under a cut name: the counts
                // are stored keyed by campaign, and PostgreSQL indexes no entry over 2,704 bytes.
                let campaign = Self.keyForDisplay(row.campaignId ?? "", cutAbove: SelectionRules.maxIdBytes)
                let id = row.messageId.map { Array($0.utf8) }
                // The run's own row: recorded before the selection was interrupted, or met again (its
                // `created_at` changed while the selection paged).
                if let id, let twin = known[id], Self.sameKey(twin, row.key) { continue }
                switch rules.classify(row) {
                case .selected:
                    if let id, let twin = known[id] {
                        counts[campaign, default: SelectionCounts()].skipped[SkipReason.malformed.rawValue, default: 0] += 1
                        malformed.append(Self.duplicate(row, of: twin))
                        continue
                    }
                    if let limit = scope.limit, selectedSoFar >= limit { continue }
                    if let id { known[id] = row.key }
                    selectedSoFar += 1
                    selected.append(row)
                    counts[campaign, default: SelectionCounts()].selected += 1
                case .skipped(let reason, let field, let problem):
                    counts[campaign, default: SelectionCounts()].skipped[reason.rawValue, default: 0] += 1
                    if reason == .malformed, let field {
                        malformed.append((Self.keyForDisplay(row.key), field, problem ?? "unusable"))
                    }
                }
            }
            for (row, twin) in try await onPage(selected, malformed) {
                let campaign = Self.keyForDisplay(row.campaignId ?? "", cutAbove: SelectionRules.maxIdBytes)
                selectedSoFar -= 1
                counts[campaign, default: SelectionCounts()].selected -= 1
                if !Self.sameKey(twin, row.key) {
                    counts[campaign, default: SelectionCounts()].skipped[SkipReason.malformed.rawValue, default: 0] += 1
                }
            }
            return true
        }
        return counts
    }

    /// Keys compare byte for byte, as PostgreSQL compares them.
    static func sameKey(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }

    /// A row whose message id the run already works from the row `twin` (a table without a UNIQUE
    /// message id): the job cannot tell which row is the message's, so it works the first it read and
    /// names the others.
    static func duplicate(_ row: CandidateRow, of twin: String) -> MalformedRow {
        (keyForDisplay(row.key), "message_id", "the same message_id as row \(keyForDisplay(twin)), which this run works")
    }

    /// A row key as logs and the report name it: over-long keys (garbage, or a hostile table) are cut
    /// to their first 64 characters plus their length and a hash, so the name stays unique and short
    /// enough to store (the report's table indexes it).
    static func keyForDisplay(_ key: String, cutAbove limit: Int = 200) -> String {
        guard key.utf8.count > limit else { return key }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a
        for byte in key.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01B3
        }
        return "\(key.prefix(64))… (\(key.utf8.count) bytes, FNV-1a \(String(hash, radix: 16)))"
    }
}
