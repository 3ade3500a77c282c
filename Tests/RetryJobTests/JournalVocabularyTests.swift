import Foundation
import RetryCore
import RetryJournal
import Testing

/// The journal's words are spelt once, in RetryJournal's enums; these check them against the schema
/// that stores them and the summary.json that counts them.
@Suite struct JournalVocabularyTests {
    /// The words the latest migration's `CHECK (column IN (...))` allows (V001's, or one that redefined it).
    static func allowed(_ column: String) throws -> Set<String> {
        let sql = try #require(Migrator.all.last { $0.sql.contains("CHECK (\(column) IN (") }).sql
        let start = try #require(sql.range(of: "CHECK (\(column) IN (")).upperBound
        let list = sql[start...].prefix { $0 != ")" }
        return Set(list.split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "' \n")) })
    }

    static func words<Word: JournalSpelling>(_: Word.Type) -> Set<String> { Set(Word.allCases.map(\.rawValue)) }

    @Test func everyWordIsOneTheSchemaAllows() throws {
        #expect(Self.words(JournalState.self) == (try Self.allowed("state")))
        #expect(Self.words(JournalOrigin.self) == (try Self.allowed("origin")))
        #expect(Self.words(WriteState.self) == (try Self.allowed("write_state")))
        #expect(Self.words(RunStatus.self) == (try Self.allowed("status")))
        #expect(Self.words(JournalOutcome.self) == (try Self.allowed("outcome")))
        #expect(Self.words(JournalResult.self) == (try Self.allowed("result")))
    }

    @Test func everySummaryCountIsASummaryJSONKey() throws {
        // A campaign's entry carries every count under the same keys as the totals.
        let json =
            try JSONSerialization.jsonObject(with: JSONEncoder().encode(RunSummary.Campaign(campaignId: "c"))) as? [String: Any]
        let keys = Set(try #require(json).keys).subtracting(["campaign_id", "skipped_by_reason"])
        #expect(Set(SummaryCount.allCases.map(\.name)) == keys)
        #expect(SummaryCount.allCases.allSatisfy { SummaryCount(name: $0.name) == $0 })
    }
}
