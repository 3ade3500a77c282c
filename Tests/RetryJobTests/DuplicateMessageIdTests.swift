import EngineTestSupport
import Foundation
import LibPQ
import PostgresTestSupport
import PostmanSimulator
import RetryCore
import RetryJournal
import RetrySettings
import Testing

@testable import RetryJob

/// A mapped agency table need not make `message_id` UNIQUE, and an application that inserted a row twice
/// leaves two rows for one Postman message. The journal holds one entry per message, so the second row used
/// to drop out of every count (neither selected nor skipped: CONTRACT.md section 3 says each failed row in
/// scope is one or the other, and section 5 that the counts add up). The run works the first row it reads
/// and names the others `malformed` (field `message_id`); neither is retried twice.
@Suite(.serialized) struct DuplicateMessageIdTests {
    @Test func aSecondRowForOneMessageIsNamedMalformedAndTheCountsAddUp() async throws {
        // Production-like rows: stale ones (Postman already retried), unknown ids, batches, skips of every kind.
        let fixture = try await EngineFixture.make(
            databasePrefix: "dupid", campaigns: 2, messages: 30, mixed: true, seed: 98, staleShare: 0.3)
        try await fixture.db.execute("ALTER TABLE outbound_messages DROP CONSTRAINT outbound_messages_message_id_key")
        var settings = fixture.settings()
        let planned = try await Plan.compute(db: fixture.db, settings: settings)
        // Three rows the run would select, inserted again a second later under new keys.
        let copies = try await fixture.db.query(
            """
            WITH firsts AS (
                SELECT * FROM outbound_messages
                WHERE status = 'failure' AND NOT is_otp AND retry_count < 3
                  AND (error_code IS NULL OR error_code IN ('recipient_unavailable', 'routing_error'))
                ORDER BY id LIMIT 3)
            INSERT INTO outbound_messages (campaign_id, message_id, batch_id, recipient, is_otp, status, retry_count,
                                           error_code, created_at)
            SELECT campaign_id, message_id, batch_id, recipient, is_otp, status, retry_count, error_code,
                   created_at + interval '1 second'
            FROM firsts
            RETURNING id::text AS copy, (SELECT f.id::text FROM firsts f WHERE f.message_id = outbound_messages.message_id) AS first
            """
        ).map { (copy: try $0.decode("copy", as: String.self), first: try $0.decode("first", as: String.self)) }
        #expect(copies.count == 3)
        let firstKeys = Set(copies.map(\.first))

        // A resumed selection knows the run's messages from the journal: the row it recorded is passed over,
        // its copy is named.
        let copy = copies[0]
        let messageId: String = try await fixture.db.query(
            "SELECT message_id FROM outbound_messages WHERE id = \(copy.first)::bigint")[0].decode("message_id")
        let selector = Selector(table: settings.table, scope: settings.scope, now: Date())
        var named: [String: String] = [:]
        let resumed = try await selector.scan(
            fixture.db, rules: settings.rules, journaled: { _ in [Array(messageId.utf8): copy.first] },
            onPage: { selected, malformed in
                #expect(!selected.contains { $0.key == copy.first || $0.key == copy.copy })
                for row in malformed { named[row.key] = "\(row.field): \(row.problem)" }
                return []
            })
        #expect(named[copy.copy] == "message_id: the same message_id as row \(copy.first), which this run works")
        #expect(named[copy.first] == nil)
        // The other two copies are met in the same page as their first rows.
        for pair in copies.dropFirst() {
            #expect(named[pair.copy] == "message_id: the same message_id as row \(pair.first), which this run works")
        }
        #expect(resumed.values.map(\.selected).reduce(0, +) == planned.selected - 1)

        let copiesBefore = try await Self.snapshot(fixture.db, copies.map(\.copy))
        settings.pollTimeout = .seconds(5)
        let result = try await fixture.run(settings)
        #expect(result.exitStatus == .completed, "\(result.message ?? "")")
        let counts = result.summary.counts
        // Every failed row in scope is selected or skipped; the copies are skipped as malformed.
        #expect(counts.selected + counts.skipped == planned.selected + planned.skipped + copies.count)
        #expect(counts.selected == planned.selected)
        #expect(counts.skippedByReason["malformed"] == (planned.skippedByReason["malformed"] ?? 0) + copies.count)
        #expect(counts.skipped == counts.skippedByReason.values.reduce(0, +))
        #expect(
            counts.selected
                == counts.retried + counts.exhausted + counts.notFound + counts.reconciled + counts.batchNotRetryable
                + counts.rejected + counts.conflict)
        let malformed = try await ReportReads.malformedRows(db: fixture.db, runId: result.runId)
        for pair in copies {
            let entry = malformed.first { $0.rowKey == pair.copy }
            #expect(entry?.field == "message_id", "\(pair.copy)")
            #expect(entry?.problem.contains("row \(pair.first)") == true, "\(entry?.problem ?? "not named")")
        }
        #expect(!malformed.contains { firstKeys.contains($0.rowKey) })
        // The copies are left as they were; the first rows were worked.
        #expect(try await Self.snapshot(fixture.db, copies.map(\.copy)) == copiesBefore)
        let worked: Int = try await fixture.db.query(
            """
            SELECT count(*)::int AS n FROM postman_retry.journal
            WHERE run_id = \(result.runId) AND row_key = ANY(\(Array(firstKeys))::text[]) AND state = 'done'
            """)[0].decode("n")
        #expect(worked == copies.count)
        let ledger = await fixture.sim.ledger()
        #expect(ledger.acceptedRetries.values.allSatisfy { $0 == 1 }, "one accepted retry per message")
        await fixture.stop()
    }

    /// The selection alone, on a table without a UNIQUE message id (`loose`, as in SelectorBadInputTests):
    /// a fresh and a resumed selection keep the same rows under `--limit`, a copy that is skipped for its
    /// own reason (OTP) is counted by that reason, and ids that differ only in their Unicode form (which
    /// Swift's `==` takes for equal, PostgreSQL not) are two messages.
    @Test func freshAndResumedSelectionsAgreeOnCopies() async throws {
        let (db, _) = try await TestDatabase.connect(prefix: "dupscan")
        try await db.executeScript(
            PGQuery(
                unsafeSQL: """
                    CREATE TABLE loose (k text, m text, c text, b text, r text, o boolean, s text, n bigint, e text,
                                        t timestamptz, u timestamptz);
                    INSERT INTO loose VALUES
                        ('k1', 'm1', 'c1', NULL, '6591110001', false, 'failure', 0, NULL, now() - interval '6 hours', now()),
                        ('k2', 'm2', 'c1', NULL, '6591110002', false, 'failure', 0, NULL, now() - interval '5 hours', now()),
                        ('k3', 'm1', 'c1', NULL, '6591110001', false, 'failure', 0, NULL, now() - interval '4 hours', now()),
                        ('k4', 'm1', 'c1', NULL, '6591110001', true, 'failure', 0, NULL, now() - interval '3 hours', now()),
                        ('k5', 'm5', 'c1', NULL, '6591110005', false, 'failure', 0, NULL, now() - interval '2 hours', now()),
                        ('k6', U&'caf\\00E9', 'c1', NULL, '6591110006', false, 'failure', 0, NULL, now() - interval '1 hour', now()),
                        ('k7', U&'cafe\\0301', 'c1', NULL, '6591110007', false, 'failure', 0, NULL, now() - interval '30 minutes', now());
                    """))
        let rules = SelectionRules()
        /// A scan whose `journaled` answers from what earlier pages recorded (as the journal would), starting
        /// from `recorded` (an interrupted selection's rows).
        func scan(limit: Int?, recorded initial: [[UInt8]: String], pageSize: Int = 1000) async throws -> (
            selected: [String], counts: SelectionCounts, named: [String: String]
        ) {
            var recorded = initial
            var selected: [String] = []
            var named: [String: String] = [:]
            let selector = Selector(
                table: SelectorBadInputTests.table, scope: RunScope(limit: limit), now: Date(), pageSize: pageSize)
            let counts = try await selector.scan(
                db, rules: rules, alreadySelected: initial.count,
                journaled: { ids in recorded.filter { entry in ids.contains { Array($0.utf8) == entry.key } } },
                onPage: { rows, malformed in
                    selected += rows.map(\.key)
                    for row in rows { recorded[Array(row.messageId!.utf8)] = row.key }
                    for row in malformed { named[row.key] = row.problem }
                    return []
                })
            return (selected, counts["c1"] ?? SelectionCounts(), named)
        }
        for pageSize in [1, 2, 1000] {
            let fresh = try await scan(limit: 3, recorded: [:], pageSize: pageSize)
            #expect(fresh.selected == ["k1", "k2", "k5"], "the copy does not take a place under --limit (pages of \(pageSize))")
            #expect(fresh.named["k3"] == "the same message_id as row k1, which this run works")
            #expect(fresh.counts.skipped == ["malformed": 1, "otp": 1], "\(fresh.counts.skipped)")
            // Interrupted after k1 and k2 were recorded.
            let resumed = try await scan(
                limit: 3, recorded: [Array("m1".utf8): "k1", Array("m2".utf8): "k2"], pageSize: pageSize)
            #expect(resumed.selected == ["k5"])
            #expect(resumed.named["k3"] == fresh.named["k3"])
            #expect(resumed.counts.skipped == fresh.counts.skipped, "\(resumed.counts.skipped)")
            // The limit reached before the copy: it is still named, fresh or resumed.
            let limited = try await scan(limit: 2, recorded: [:], pageSize: pageSize)
            let limitedResumed = try await scan(
                limit: 2, recorded: [Array("m1".utf8): "k1", Array("m2".utf8): "k2"], pageSize: pageSize)
            #expect(limited.named["k3"] != nil && limitedResumed.named["k3"] != nil)
            #expect(limited.counts.skipped == limitedResumed.counts.skipped, "\(limited.counts.skipped)")
        }
        let all = try await scan(limit: nil, recorded: [:])
        #expect(all.selected == ["k1", "k2", "k5", "k6", "k7"], "two Unicode forms of one word are two ids")
        await db.close()
    }

    static func snapshot(_ db: PGConnection, _ keys: [String]) async throws -> [String] {
        try await db.query(
            """
            SELECT concat_ws('|', id, status, retry_count, error_code, updated_at) AS row FROM outbound_messages
            WHERE id = ANY(\(keys)::bigint[]) ORDER BY id
            """
        ).map { try $0.decode("row") }
    }
}
