import Foundation
import LibPQ
import PostgresTestSupport
import RetryCore
import RetrySettings
import Testing

@testable import RetryJob

/// The selection against values no reference table can hold (issue 8, "Bad input"): a NULL key, and
/// bytes that are not UTF-8 in a `SQL_ASCII` database. Each bad row is named and skipped; none stops
/// the selection, and keyset pagination visits every row once even when a page ends on a bad key.
@Suite struct SelectorBadInputTests {
    static let table = AgencyTable(
        schema: nil, table: "loose", key: "k", messageId: "m", campaignId: "c", batchId: "b", recipient: "r",
        isOtp: "o", status: "s", retryCount: "n", errorCode: "e", createdAt: "t", updatedAt: "u")

    /// Keys in the order the selection reads them (C collation; the NULL key is an hour later).
    static let order = ["k1", "k2", "k3\u{FFFD}", "k4", "k5", "k6", "k7", "NULL"]

    static func makeTable() async throws -> PGConnection {
        let (db, _) = try await TestDatabase.connect(prefix: "sel", encoding: .sqlASCII)
        // Bytes go in as hex through convert_from: the database takes them unchecked.
        try await db.executeScript(
            PGQuery(
                unsafeSQL: """
                    CREATE TABLE loose (k text, m text, c text, b text, r text, o boolean, s text, n bigint, e text,
                                        t timestamptz, u timestamptz);
                    CREATE FUNCTION pg_temp.bytes(hex text) RETURNS text LANGUAGE sql
                        AS $$ SELECT convert_from(decode(hex, 'hex'), 'SQL_ASCII') $$;
                    INSERT INTO loose VALUES
                        ('k1', 'm1', 'c1', NULL, '6591110001', false, 'failure', 0, NULL, now() - interval '2 hours', now()),
                        ('k2', pg_temp.bytes('6d32ff'), 'c1', NULL, '6591110002', false, 'failure', 0, NULL, now() - interval '2 hours', now()),
                        (pg_temp.bytes('6b33ff'), 'm3', 'c1', NULL, '6591110003', false, 'failure', 0, NULL, now() - interval '2 hours', now()),
                        ('k4', 'm4', pg_temp.bytes('63c328'), NULL, '6591110004', false, 'failure', 0, NULL, now() - interval '2 hours', now()),
                        ('k5', 'm5', 'c1', NULL, pg_temp.bytes('3635e282'), false, 'failure', 0, NULL, now() - interval '2 hours', now()),
                        ('k6', 'm6', 'c1', NULL, '6591110006', false, 'failure', 0, pg_temp.bytes('65ff'), now() - interval '2 hours', now()),
                        ('k7', 'm7', 'c1', NULL, '6591110007', false, 'failure', 0, NULL, now() - interval '2 hours', now()),
                        (NULL, 'm8', 'c1', NULL, '6591110008', false, 'failure', 0, NULL, now() - interval '1 hour', now()),
                        ('k9', pg_temp.bytes('6d39ff'), 'c1', NULL, '6591110009', false, pg_temp.bytes('6661696cff'), 0, NULL, now() - interval '2 hours', now());
                    """))
        return db
    }

    @Test func bytesThatAreNotUTF8AndANullKeyAreNamedAndEveryRowIsReadOnce() async throws {
        let db = try await Self.makeTable()
        // Asked for text, PostgreSQL refuses the whole page for one bad byte: why the selection reads bytes.
        let plain = Selector(table: Self.table, scope: RunScope(), now: Date())
        await #expect(throws: PGError.self) { _ = try await db.query(plain.pageQuery(after: nil)) }
        #expect(try await Selector.readsRawBytes(db))

        let rules = SelectionRules()
        for pageSize in 1...4 {
            let selector = Selector(table: Self.table, scope: RunScope(), now: Date(), pageSize: pageSize)
            var seen: [String] = []
            var verdicts: [String: SelectionVerdict] = [:]
            try await selector.forEachPage(db) { page in
                for row in page {
                    seen.append(row.key)
                    verdicts[row.key] = rules.classify(row)
                }
                return true
            }
            #expect(seen == Self.order, "page size \(pageSize)")
            #expect(verdicts["k1"] == .selected && verdicts["k7"] == .selected)
            for (key, field) in [
                ("k2", "message_id"), ("k3\u{FFFD}", "key"), ("k4", "campaign_id"), ("k5", "recipient"), ("NULL", "key")
            ] {
                guard case .skipped(.malformed, let named, let problem) = verdicts[key] else {
                    Issue.record("\(key) should be malformed, is \(String(describing: verdicts[key]))")
                    continue
                }
                #expect(named == field, "\(key)")
                #expect(problem?.contains(key == "NULL" ? "is NULL" : "is not UTF-8 text") == true, "\(key): \(problem ?? "")")
            }
            // An error code that is not UTF-8 is no known code: skipped for that, before `malformed`.
            #expect(verdicts["k6"] == .skipped(.unknownErrorCode))
        }

        // The counts a run records, and the names of the malformed rows.
        let selector = Selector(table: Self.table, scope: RunScope(), now: Date(), pageSize: 3)
        var named: [String] = []
        let counts = try await selector.scan(db, rules: rules) { _, malformed in
            named += malformed.map { "\($0.key)/\($0.field)" }
            return []
        }
        let total = counts.values.reduce(into: SelectionCounts()) { sum, count in
            sum.selected += count.selected
            for (reason, n) in count.skipped { sum.skipped[reason, default: 0] += n }
        }
        #expect(total.selected == 2)
        #expect(total.skipped == ["malformed": 5, "unknown_error_code": 1])
        #expect(Set(named) == ["k2/message_id", "k3\u{FFFD}/key", "k4/campaign_id", "k5/recipient", "NULL/key"])
        await db.close()
    }

    @Test func positionOfTheFirstByteThatIsNotUTF8() {
        #expect(Selector.utf8ErrorOffset(Array("abc".utf8)) == 3)
        #expect(Selector.utf8ErrorOffset([0x61, 0xFF, 0x62]) == 1)
        #expect(Selector.utf8ErrorOffset(Array("é".utf8) + [0xC3]) == 2, "a sequence cut short")
        #expect(Selector.hexBytes("61ff") == [0x61, 0xFF])
        #expect(Selector.hexBytes("6") == nil && Selector.hexBytes("zz") == nil)
    }

    @Test func overlongKeysAreCutForTheReportButStayDistinct() {
        let a = String(repeating: "k", count: 9_999) + "a"
        let b = String(repeating: "k", count: 9_999) + "b"
        #expect(Selector.keyForDisplay("short-key") == "short-key")
        #expect(Selector.keyForDisplay(a).utf8.count < 200)
        #expect(Selector.keyForDisplay(a).contains("10000 bytes"))
        #expect(Selector.keyForDisplay(a) != Selector.keyForDisplay(b))
    }
}
