import Foundation
import LibPQ
import PostgresTestSupport
import RetryConfig
import RetrySettings
import Testing

/// `config check` against a real PostgreSQL: the mapping fits, or every misfit is named.
struct TableCheckTests {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    func referenceDatabase(index: Bool) async throws -> PGConnection {
        let (db, _) = try await TestDatabase.connect(prefix: "cfgcheck")
        let files = ["sql/reference-schema.sql"] + (index ? ["sql/recommended-index.sql"] : [])
        for file in files {
            let sql = try String(contentsOf: Self.repoRoot.appendingPathComponent(file), encoding: .utf8)
            try await db.executeScript(PGQuery(unsafeSQL: sql))
        }
        return db
    }

    @Test func theReferenceTableWithItsIndexFits() async throws {
        let db = try await referenceDatabase(index: true)
        let result = try await TableCheck(table: .reference).run(db)
        #expect(result.ok, "\(result.problems)")
        #expect(result.suggestedIndexes.isEmpty)
        #expect(result.notes.contains { $0.contains("outbound_messages_failed_idx") })
        // The reference table's message id is UNIQUE: that index serves the intents and write-backs.
        #expect(result.notes.contains { $0.contains("through index outbound_messages_message_id_key") }, "\(result.notes)")
        await db.close()
    }

    @Test func aMissingIndexPrintsTheStatementToAddIt() async throws {
        let db = try await referenceDatabase(index: false)
        let result = try await TableCheck(table: .reference).run(db)
        #expect(result.ok)
        #expect(result.suggestedIndexes.count == 1, "\(result.suggestedIndexes)")
        let index = try #require(result.suggestedIndexes.first)
        #expect(
            index
                == #"CREATE INDEX CONCURRENTLY "outbound_messages_failed_idx" ON "outbound_messages" ("created_at", "id") WHERE "status" = 'failure';"#
        )
        // The printed statement works.
        try await db.execute(PGQuery(unsafeSQL: index.replacingOccurrences(of: "CONCURRENTLY ", with: "")))
        #expect(try await TableCheck(table: .reference).run(db).suggestedIndexes.isEmpty)
        await db.close()
    }

    /// A table whose message id has no index (an agency's own table may lack one): every wave's intents
    /// and every write-back would read the whole table; the check prints the statement that adds one.
    @Test func aMessageIdWithoutAnIndexPrintsTheStatementToAddOne() async throws {
        let db = try await referenceDatabase(index: true)
        try await db.execute("ALTER TABLE outbound_messages DROP CONSTRAINT outbound_messages_message_id_key")
        // An index that starts with another column, or a partial one, does not serve the look-ups.
        try await db.execute("CREATE INDEX by_campaign ON outbound_messages (campaign_id, message_id)")
        try await db.execute("CREATE INDEX failed_ids ON outbound_messages (message_id) WHERE status = 'failure'")
        let result = try await TableCheck(table: .reference).run(db)
        #expect(result.ok)
        #expect(result.slowPaths.contains { $0.contains("no index on message_id") }, "\(result.slowPaths)")
        // `plan` and `run` see it too (they read no index predicates): for a warning in their log.
        let slow = try await TableCheck.requireFit(.reference, db: db, writes: true)
        #expect(slow.count == 1 && slow[0].contains("config check"), "\(slow)")
        #expect(
            result.suggestedIndexes
                == [#"CREATE INDEX CONCURRENTLY "outbound_messages_message_id_idx" ON "outbound_messages" ("message_id");"#])
        try await db.execute(PGQuery(unsafeSQL: result.suggestedIndexes[0].replacingOccurrences(of: "CONCURRENTLY ", with: "")))
        #expect(try await TableCheck(table: .reference).run(db).suggestedIndexes.isEmpty)
        #expect(try await TableCheck.requireFit(.reference, db: db, writes: true).isEmpty)
        await db.close()
    }

    /// The message id index of a table with quoted names in another schema, as agencies name them: a BRIN
    /// index or one in another collation does not serve `message_id = …`, nor does an invalid index (a
    /// failed CREATE INDEX CONCURRENTLY); a B-tree does.
    @Test func theMessageIdIndexOfAQuotedTableMustServeEquality() async throws {
        let (db, _) = try await TestDatabase.connect(prefix: "cfgcheck")
        try await db.executeScript(
            """
            CREATE SCHEMA "Agency Data";
            CREATE TABLE "Agency Data"."Outbound SMS" (
                "MsgKey" text PRIMARY KEY, "postmanId" text NOT NULL, "Campaign" text NOT NULL, phone text NOT NULL,
                "Delivery State" text NOT NULL, retries integer NOT NULL, last_error text, sent_at timestamptz NOT NULL,
                modified timestamptz NOT NULL, batch text, otp_flag boolean NOT NULL DEFAULT false
            );
            CREATE INDEX by_range ON "Agency Data"."Outbound SMS" USING brin ("postmanId");
            CREATE INDEX in_c ON "Agency Data"."Outbound SMS" ("postmanId" COLLATE "C");
            CREATE INDEX broken ON "Agency Data"."Outbound SMS" ("postmanId");
            UPDATE pg_index SET indisvalid = false WHERE indexrelid = '"Agency Data".broken'::regclass;
            """)
        let file = try ConfigFile.parse(QuotedAgencyTable.config)
        let table = try #require(file.table)
        let result = try await TableCheck(table: table).run(db)
        #expect(result.ok, "\(result.problems)")
        #expect(result.slowPaths.contains { $0.contains("no index on postmanId") }, "\(result.slowPaths)")
        let statement = try #require(result.suggestedIndexes.first { $0.contains("postmanId") })
        #expect(
            statement
                == #"CREATE INDEX CONCURRENTLY "Outbound SMS_message_id_idx" ON "Agency Data"."Outbound SMS" ("postmanId");"#)
        try await db.execute(PGQuery(unsafeSQL: statement.replacingOccurrences(of: "CONCURRENTLY ", with: "")))
        let after = try await TableCheck(table: table).run(db)
        #expect(
            after.notes.contains { $0.contains("through index \"Agency Data\".\"Outbound SMS_message_id_idx\"") },
            "\(after.notes)")
        #expect(try await TableCheck.requireFit(table, db: db, writes: true).isEmpty)
        await db.close()
    }

    /// A partitioned table is read through its partitions' indexes: one on each partition counts, a
    /// partition without one is named, and the statement printed is one PostgreSQL takes on a partitioned
    /// table (no CONCURRENTLY).
    @Test func aPartitionedTableIsCheckedPartitionByPartition() async throws {
        let (db, _) = try await TestDatabase.connect(prefix: "cfgcheck")
        try await db.executeScript(
            """
            CREATE TABLE outbound_messages (
                id bigint NOT NULL, campaign_id text NOT NULL, message_id text NOT NULL, batch_id text,
                recipient text NOT NULL, is_otp boolean NOT NULL DEFAULT false, status text NOT NULL,
                retry_count integer NOT NULL DEFAULT 0, error_code text, created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL
            ) PARTITION BY RANGE (created_at);
            CREATE TABLE outbound_2026_11 PARTITION OF outbound_messages FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
            CREATE TABLE outbound_2026_12 PARTITION OF outbound_messages FOR VALUES FROM ('2026-12-01') TO ('2027-01-01');
            CREATE INDEX ON outbound_2026_11 (message_id);
            """)
        let result = try await TableCheck(table: .reference).run(db)
        #expect(result.ok, "\(result.problems)")
        #expect(result.slowPaths.contains { $0.contains("in partition(s) outbound_2026_12") }, "\(result.slowPaths)")
        #expect(
            result.suggestedIndexes.contains(
                #"CREATE INDEX "outbound_messages_message_id_idx" ON "outbound_messages" ("message_id");"#))
        #expect(!result.suggestedIndexes.contains { $0.contains("CONCURRENTLY") }, "\(result.suggestedIndexes)")
        // The selection's partial index: none on either partition yet.
        #expect(
            result.slowPaths.contains {
                $0.contains("WHERE status = 'failure' in partition(s) outbound_2026_11, outbound_2026_12")
            }, "\(result.slowPaths)")
        try await db.executeScript(
            """
            CREATE INDEX ON outbound_2026_12 (message_id);
            CREATE INDEX ON outbound_2026_11 (created_at, id) WHERE status = 'failure';
            """)
        let half = try await TableCheck(table: .reference).run(db)
        #expect(half.slowPaths.map { $0.contains("'failure' in partition(s) outbound_2026_12:") } == [true], "\(half.slowPaths)")
        // An index made on each partition alone (not on the parent) serves the selection as well.
        try await db.execute("CREATE INDEX ON outbound_2026_12 (created_at, id) WHERE status = 'failure'")
        let after = try await TableCheck(table: .reference).run(db)
        #expect(after.slowPaths.isEmpty, "\(after.slowPaths)")
        #expect(after.suggestedIndexes.isEmpty, "\(after.suggestedIndexes)")
        #expect(after.notes.filter { $0.contains("and 1 more, one per partition") }.count == 2, "\(after.notes)")
        await db.close()
    }

    /// Only a predicate that keeps the failures (alone or ANDed with more) serves the selection.
    @Test func aSelectionIndexCountsOnlyWhenItsPredicateKeepsTheFailures() async throws {
        let db = try await referenceDatabase(index: false)
        func selectionIndexFits() async throws -> Bool {
            let result = try await TableCheck(table: .reference).run(db)
            #expect(result.ok, "\(result.problems)")
            return result.notes.contains { $0.hasPrefix("the selection can read through index") }
        }
        try await db.execute("CREATE INDEX not_failed ON outbound_messages (created_at, id) WHERE status <> 'failure'")
        try await db.execute(
            "CREATE INDEX failed_or_sent ON outbound_messages (created_at, id) WHERE status = 'failure' OR status = 'sent'")
        try await db.execute("CREATE INDEX failed_by_id ON outbound_messages (id, created_at) WHERE status = 'failure'")
        #expect(try await selectionIndexFits() == false)
        try await db.execute(
            "CREATE INDEX failed_not_otp ON outbound_messages (created_at, id) WHERE status = 'failure' AND NOT is_otp")
        #expect(try await selectionIndexFits())
        // A varchar column: PostgreSQL prints the predicate with a cast, `(status)::text = 'failure'::text`.
        try await db.executeScript(
            """
            DROP INDEX failed_not_otp;
            ALTER TABLE outbound_messages ALTER COLUMN status TYPE varchar(32);
            """)
        #expect(try await selectionIndexFits() == false)
        try await db.execute("CREATE INDEX failed_varchar ON outbound_messages (created_at, id) WHERE status = 'failure'")
        #expect(try await selectionIndexFits())
        await db.close()
    }

    @Test func everyMisfitIsListedAtOnce() async throws {
        let (db, _) = try await TestDatabase.connect(prefix: "cfgcheck")
        try await db.executeScript(
            """
            CREATE TABLE sms (
                id bigint PRIMARY KEY, campaign_id text, message_id text, recipient text, status text,
                retry_count text, error_code text, created_at date, updated_at timestamptz, is_otp integer,
                batch_id text
            );
            """)
        let file = try ConfigFile.parse("[table]\nname = \"sms\"\n[table.columns]\nerror_code = \"eror_code\"\n")
        let result = try await TableCheck(table: try #require(file.table)).run(db)
        let text = result.problems.joined(separator: "\n")
        #expect(result.problems.count == 4, "\(text)")
        #expect(text.contains("retry_count = 'retry_count' is text; it must be smallint, integer or bigint"))
        #expect(text.contains("created_at = 'created_at' is date; it must be timestamp or timestamptz"))
        #expect(text.contains("otp.column = 'is_otp' is integer; it must be boolean"))
        #expect(text.contains("error_code = 'eror_code': no such column in sms; did you mean 'error_code'?"))
        await db.close()
    }

    @Test func aMissingTableIsNamed() async throws {
        let (db, _) = try await TestDatabase.connect(prefix: "cfgcheck")
        let file = try ConfigFile.parse("[table]\nschema = \"Ops\"\nname = \"Messages\"\n")
        let result = try await TableCheck(table: try #require(file.table)).run(db)
        #expect(
            result.problems == [
                "table Ops.Messages does not exist (or is not on the search path of this connection); set [table] name and schema in the config file"
            ])
        await db.close()
    }
}
