import EngineTestSupport
import Foundation
import LibPQ
import PostmanSimulator
import RetryCore
import RetryJournal
import RetrySettings
import SampleData
import Testing

@testable import RetryJob

/// What a resumed run learns of a whole-batch call from the journal (`RunStore.firstItems`): its members
/// wait for Postman's background batch retry only when the call may have gone out for their current intent
/// and was not refused. Each state is the one a kill at that step leaves.
@Suite(.serialized) struct BatchCallRestoreTests {
    @Test func aMemberRestoredAfterAKillWaitsOnlyForACallThatMayHaveGoneOutForItsIntent() async throws {
        let fixture = try await WholeBatchTests.incident(members: 6)
        let settings = fixture.settings()
        let store = RunStore(db: fixture.db, table: settings.table)
        let run = try await store.openRun(scope: settings.scope)
        var rows: [CandidateRow] = []
        _ = try await Selector(table: settings.table, scope: settings.scope, now: Date()).scan(
            fixture.db, rules: settings.rules,
            onPage: { selected, _ in
                rows += selected
                return []
            })
        try await store.recordSelected(run: run.id, rows: rows, malformed: [])
        let campaign = fixture.data.simulator.campaigns[0].id
        let members = rows.filter { $0.batchId == "incident" }.compactMap(\.messageId)
        #expect(members.count == 6)

        func restored() async throws -> [String: (sent: Date?, answered: Date?)] {
            let items = try await store.firstItems(run: run.id, campaign: campaign, limit: 100).items
            var result: [String: (sent: Date?, answered: Date?)] = [:]
            for item in items where members.contains(item.messageId) && item.journalState == .intent {
                result[item.messageId] = (item.batchCallSentAt, item.batchCallAnsweredAt)
            }
            return result
        }

        let committed = try await store.commitBatchIntent(
            run: run.id, campaign: campaign, batch: "incident", messageIds: members, witnesses: members.map { _ in 1 })
        #expect(committed.whole && committed.intents.count == 6)
        // Killed before the call: it certainly did not go out.
        var seen = try await restored()
        #expect(seen.count == 6 && seen.values.allSatisfy { $0.sent == nil && $0.answered == nil })

        // Killed after it was sent, before its answer was recorded.
        try await store.markBatchSent(campaign: campaign, batch: "incident")
        seen = try await restored()
        #expect(seen.values.allSatisfy { $0.sent != nil && $0.answered == nil }, "\(seen)")

        // A lost answer (no status, a 5xx, an odd 2xx) and a 201: waited for, from the answer.
        for status in [nil, 502, 200, 201] as [Int?] {
            try await store.recordBatchAnswer(campaign: campaign, batch: "incident", httpStatus: status, code: nil)
            seen = try await restored()
            #expect(seen.count == 6 && seen.values.allSatisfy { $0.sent != nil && $0.answered != nil }, "\(status ?? 0)")
        }

        // One member's own later intent (a single retry after the batch's window) is not the call's.
        let single = members[0]
        try await store.revertIntents(run: run.id, messageIds: [single])
        try await fixture.db.execute("SELECT pg_sleep(0.01)")
        let again = try await store.commitIntents(run: run.id, messageIds: [single], witnesses: [1])
        #expect(again.intents == [single])
        seen = try await restored()
        #expect(seen[single].map { $0.sent == nil && $0.answered == nil } == true, "\(seen[single].debugDescription)")
        #expect(seen.filter { $0.key != single }.values.allSatisfy { $0.sent != nil })

        // A 4xx says no member was retried: nothing to wait for.
        try await store.recordBatchAnswer(
            campaign: campaign, batch: "incident", httpStatus: 400, code: "unresolved_batch_messages")
        seen = try await restored()
        #expect(seen.count == 6 && seen.values.allSatisfy { $0.sent == nil && $0.answered == nil }, "\(seen)")
        await fixture.stop()
    }
}
