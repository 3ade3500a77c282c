import LibPQ
import PostgresTestSupport
import RetryJob
import RetryJournal
import Testing

@Suite struct MigratorTests {
    static func schema(_ db: PGConnection) async throws -> [String] {
        try await db.query(
            """
            SELECT table_name || '.' || column_name || ':' || data_type AS c FROM information_schema.columns
            WHERE table_schema = 'postman_retry' ORDER BY 1
            """
        ).map { try $0.decode("c", as: String.self) }
    }

    @Test func migrateTwiceLeavesTheSameSchema() async throws {
        let (db, _) = try await TestDatabase.connect()
        try await db.execute("CREATE TABLE outbound_messages (id int)")
        let first = try await Migrator().migrate(db)
        #expect(first.applied == Migrator.all.map(\.name))
        let shape = try await Self.schema(db)
        #expect(shape.contains("journal.message_id:text"))
        let second = try await Migrator().migrate(db)
        #expect(second.applied.isEmpty && second.alreadyApplied.count == Migrator.all.count)
        #expect(try await Self.schema(db) == shape)
        #expect(try await db.execute("SELECT count(*) AS n FROM outbound_messages")[0].decode("n", as: Int.self) == 0)
    }

    @Test func aChangedMigrationIsRefused() async throws {
        let (db, _) = try await TestDatabase.connect()
        _ = try await Migrator().migrate(db)
        var changed = Migrator.all
        changed[0] = Migration(version: changed[0].version, name: changed[0].name, sql: changed[0].sql + "\n-- edited")
        await #expect(throws: Migrator.Failure.self) { try await Migrator(migrations: changed).migrate(db) }
    }

    /// V010 adds `batch_calls.sent_at`: a whole-batch call recorded before it may have gone out any time
    /// after its intent, so a run resumed across the upgrade waits for it as it would have (its members'
    /// restore joins on `sent_at`); the upgrade leaves no such call without one.
    @Test func anUpgradeToV010MarksEarlierBatchCallsAsSentAtTheirIntent() async throws {
        let (db, _) = try await TestDatabase.connect()
        let before = Migrator.all.filter { $0.version < 10 }
        #expect(before.count == 9)
        _ = try await Migrator(migrations: before).migrate(db)
        try await db.execute(
            """
            INSERT INTO postman_retry.runs (status, scope, agency_table) VALUES ('interrupted', '{}', 'outbound_messages')
            """)
        try await db.execute(
            """
            INSERT INTO postman_retry.batch_calls (campaign_id, batch_id, run_id, members, intent_at, answered_at, http_status)
            VALUES ('c1', 'unanswered', 1, 5, '2026-12-01T10:00:00Z', NULL, NULL),
                   ('c1', 'answered', 1, 4, '2026-12-01T11:00:00Z', '2026-12-01T11:00:01Z', 201)
            """)
        let upgrade = try await Migrator().migrate(db)
        #expect(upgrade.applied.contains { $0.contains("batch_call_sent") }, "\(upgrade.applied)")
        let rows: [String] = try await db.query(
            """
            SELECT batch_id || ':' || (sent_at = intent_at)::text AS r FROM postman_retry.batch_calls ORDER BY batch_id
            """
        ).map { try $0.decode("r") }
        #expect(rows == ["answered:true", "unanswered:true"])
    }

    /// V011 adds the gate's takeover stamp: a holder present at the upgrade belongs to an older binary, which
    /// may have just taken a dead holder's place with no trigger to say so, so the upgrade stamps the gate
    /// then; with nobody holding, it stamps nothing (a fresh database's first run waits only its second).
    @Test func anUpgradeToV011WithAHolderPresentStampsATakeover() async throws {
        for holderPresent in [false, true] {
            let (db, _) = try await TestDatabase.connect()
            _ = try await Migrator(migrations: Migrator.all.filter { $0.version < 11 }).migrate(db)
            if holderPresent {
                try await db.execute(
                    """
                    INSERT INTO postman_retry.run_holders (holder_id, worker_id, exclusive, expires_at)
                    VALUES ('old#1', 'old', true, now() + interval '5 seconds')
                    """)
            }
            _ = try await Migrator().migrate(db)
            let stamped: Bool = try await db.query(
                "SELECT last_takeover_at IS NOT NULL AS stamped FROM postman_retry.run_gate")[0].decode("stamped")
            #expect(stamped == holderPresent)
        }
    }

    @Test func concurrentMigrationsSerialise() async throws {
        let (db, url) = try await TestDatabase.connect()
        let other = try await PGConnection.connect(PGConfiguration(url: url), logger: TestDatabase.logger)
        async let a = Migrator().migrate(db)
        async let b = Migrator().migrate(other)
        let (ra, rb) = try await (a, b)
        #expect(ra.applied.count + rb.applied.count == Migrator.all.count)
    }
}
