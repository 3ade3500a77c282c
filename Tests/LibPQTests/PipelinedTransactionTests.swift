import Foundation
import LibPQ
import PostgresTestSupport
import Testing

/// `PGConnection.pipelinedTransaction`: the statements of a journal write sent at once (libpq's pipeline
/// mode), against a real PostgreSQL. Each test ends with the connection used again in plain mode, which
/// fails if a pipeline was left open.
@Suite struct PipelinedTransactionTests {
    @Test func statementsCommitTogetherAndReturnTheirRowsInOrder() async throws {
        let (db, _) = try await TestDatabase.connect()
        try await db.execute("CREATE TABLE p (id int PRIMARY KEY, name text)")
        let ids = Array(1...500)
        let names = ids.map { "name \($0) \"quoted\" é" }
        let rows = try await db.pipelinedTransaction([
            "INSERT INTO p SELECT * FROM unnest(\(ids)::int[], \(names)::text[])",
            "UPDATE p SET name = name || '!' WHERE id <= \(10)",
            "SELECT id FROM p WHERE id > \(495) ORDER BY id",
            "SELECT current_setting('transaction_isolation') AS level, now() = statement_timestamp() AS same"
        ]) { rows in rows }
        #expect(rows.count == 4)
        #expect(rows[0].affectedRows == 500)
        #expect(rows[1].affectedRows == 10)
        #expect(try rows[2].map { try $0.decode("id", as: Int.self) } == [496, 497, 498, 499, 500])
        #expect(try await db.execute("SELECT count(*) AS n FROM p")[0].decode("n", as: Int.self) == 500)
        #expect(
            try await db.execute("SELECT name FROM p WHERE id = \(3)")[0].decode("name", as: String.self)
                == "name 3 \"quoted\" é!")
        // One transaction: every statement saw the same now().
        let stamps = try await db.pipelinedTransaction(["SELECT now() AS t", "SELECT pg_sleep(0.05)", "SELECT now() AS t"]) {
            rows in try [rows[0], rows[2]].map { try $0[0].decode("t", as: String.self) }
        }
        #expect(stamps[0] == stamps[1])
    }

    @Test func aFailingStatementKeepsNothingAndThrowsItsOwnError() async throws {
        let (db, _) = try await TestDatabase.connect()
        try await db.execute("CREATE TABLE p (id int PRIMARY KEY)")
        do {
            try await db.pipelinedTransaction([
                "INSERT INTO p VALUES (\(1))",
                "INSERT INTO p VALUES (\(2))",
                "INSERT INTO p VALUES (\(1))",
                "INSERT INTO p VALUES (\(3))"
            ]) { _ in Issue.record("decide must not run when a statement failed") }
            Issue.record("the duplicate key should fail the transaction")
        } catch let error as PGError {
            #expect(error.sqlState == .uniqueViolation)
            #expect(error.query?.contains("INSERT INTO p") == true)
            #expect(error.statementIndex == 2, "the third of the caller's statements failed")
        }
        #expect(try await db.execute("SELECT count(*) AS n FROM p")[0].decode("n", as: Int.self) == 0)
        // The connection is back in plain mode and outside any transaction.
        try await db.execute("INSERT INTO p VALUES (\(9))")
        #expect(try await db.execute("SELECT count(*) AS n FROM p")[0].decode("n", as: Int.self) == 1)
    }

    /// A parameter libpq cannot send (a NUL byte) is refused before anything goes out: no transaction is
    /// left open to be joined by the connection's next statement.
    @Test func aRefusedParameterSendsNothing() async throws {
        let (db, _) = try await TestDatabase.connect()
        try await db.execute("CREATE TABLE p (id int, note text)")
        do {
            try await db.pipelinedTransaction([
                "INSERT INTO p VALUES (\(1), \("fine"))",
                "INSERT INTO p VALUES (\(2), \("nul \u{0} inside"))"
            ]) { _ in }
            Issue.record("a NUL byte must be refused")
        } catch let error as PGError {
            #expect(error.kind == .misuse)
            #expect(error.message.contains("$2"), "\(error.message)")
        }
        // The next statement runs in a transaction of its own, and nothing of the refused one is there.
        // (SAVEPOINT fails outside a transaction block.)
        await #expect(throws: PGError.self) { try await db.execute("SAVEPOINT probe") }
        #expect(try await db.execute("SELECT count(*) AS n FROM p")[0].decode("n", as: Int.self) == 0)
    }

    /// What the journal's fences rely on: a check whose rows say no makes `decide` throw, and the
    /// statements that ran after the check in the same pipeline are rolled back.
    @Test func decideThrowingRollsEverythingBack() async throws {
        struct Refused: Error {}
        let (db, _) = try await TestDatabase.connect()
        try await db.execute("CREATE TABLE held (holder text)")
        try await db.execute("CREATE TABLE p (id int)")
        do {
            try await db.pipelinedTransaction([
                "SELECT 1 AS held FROM held WHERE holder = \("me") FOR KEY SHARE",
                "INSERT INTO p VALUES (\(1))"
            ]) { rows in
                if rows[0].isEmpty { throw Refused() }
            }
            Issue.record("decide should have refused")
        } catch is Refused {}
        #expect(try await db.execute("SELECT count(*) AS n FROM p")[0].decode("n", as: Int.self) == 0)
        try await db.execute("INSERT INTO held VALUES (\("me"))")
        try await db.pipelinedTransaction([
            "SELECT 1 AS held FROM held WHERE holder = \("me") FOR KEY SHARE",
            "INSERT INTO p VALUES (\(1))"
        ]) { rows in
            if rows[0].isEmpty { throw Refused() }
        }
        #expect(try await db.execute("SELECT count(*) AS n FROM p")[0].decode("n", as: Int.self) == 1)
    }

    /// The configuration's SET LOCALs hold inside the pipeline (one statement each: the extended protocol
    /// takes no scripts) and end with it.
    @Test func transactionSettingsApplyInsideThePipeline() async throws {
        let url = try await TestDatabase.create()
        var configuration = PGConfiguration(url: url)
        configuration.transactionSettings = ["statement_timeout": "4321", "lock_timeout": "1234"]
        let db = try await PGConnection.connect(configuration, logger: TestDatabase.logger)
        let seen = try await db.pipelinedTransaction([
            "SELECT current_setting('statement_timeout') AS s, current_setting('lock_timeout') AS l"
        ]) { rows in try [rows[0][0].decode("s", as: String.self), rows[0][0].decode("l", as: String.self)] }
        #expect(seen == ["4321ms", "1234ms"])
        #expect(try await db.execute("SHOW statement_timeout")[0].decode("statement_timeout", as: String.self) != "4321ms")
    }

    /// Big parameters out and many rows back in one pipeline: libpq reads answers while it waits to send,
    /// so neither side blocks on a full socket buffer.
    @Test func largeParametersAndLargeResultsDoNotDeadlock() async throws {
        let (db, _) = try await TestDatabase.connect()
        let ids = (0..<150_000).map { "message-\($0)-\(String(repeating: "x", count: 20))" }
        let counts = try await db.pipelinedTransaction([
            "SELECT g AS n, repeat('y', 100) AS filler FROM generate_series(1, 50000) g",
            "SELECT count(*) AS n FROM unnest(\(ids)::text[])",
            "SELECT g AS n FROM generate_series(1, 50000) g",
            "SELECT count(*) AS n FROM unnest(\(ids)::text[])"
        ]) { rows in rows.map(\.count) + [try rows[1][0].decode("n", as: Int.self)] }
        #expect(counts == [50_000, 1, 50_000, 1, 150_000])
    }

    @Test func aConnectionLostBeforeThePipelineIsALossNotAHang() async throws {
        let (db, url) = try await TestDatabase.connect()
        let other = try await PGConnection.connect(PGConfiguration(url: url), logger: TestDatabase.logger)
        try await other.execute("SELECT pg_terminate_backend(\(Int(await db.backendPID)))")
        let started = ContinuousClock.now
        do {
            try await db.pipelinedTransaction(["SELECT 1 AS one", "SELECT 2 AS two"]) { _ in }
            Issue.record("a terminated connection must fail")
        } catch let error as PGError {
            #expect(error.isTransient, "\(error)")
        }
        #expect(ContinuousClock.now - started < .seconds(5))
        // Later use fails too, and quickly, instead of finding a half-read pipeline.
        await #expect(throws: PGError.self) { try await db.execute("SELECT 1") }
    }
}
