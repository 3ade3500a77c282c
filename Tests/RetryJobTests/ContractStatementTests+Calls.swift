import EngineTestSupport
import Foundation
import LibPQ
import PostmanSimulator
import RetryCore
import RetryJob
import RetryJournal
import RetrySettings
import SampleData
import Testing

/// CONTRACT.md section 5: exit 69 when Postman stays unreachable, `api_calls` against what Postman saw, and
/// `plan` calling and writing nothing.
extension ContractStatementTests {
    // MARK: exit 69

    /// Runs in process against an unreachable Postman (`apiURL`), with the give-up time short (it is 120 s by
    /// default and the binary has no setting for it, so this is the engine's `RunSettings.unreachableAfter`).
    /// Expects exit 69 with a message that names the problem (`problem`), nothing retried or written; then a
    /// run against the working simulator resumes the same run and retries every message once.
    func expectUnreachableThenResume(
        _ fixture: EngineFixture, apiURL: String, problem: [String], sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let before = try await fixture.table()
        var settings = fixture.settings()
        settings.apiURL = apiURL
        settings.unreachableAfter = .seconds(3)
        let started = ContinuousClock.now
        let first = try await fixture.run(settings)
        let seconds = (ContinuousClock.now - started).seconds
        #expect(
            first.exitStatus == .unavailable && first.exitStatus.rawValue == 69, "exit \(first.exitStatus)",
            sourceLocation: sourceLocation)
        let message = first.message ?? ""
        #expect(message.contains("unreachable"), "message: \(message)", sourceLocation: sourceLocation)
        for word in problem {
            #expect(
                message.lowercased().contains(word), "the message does not say \(word): \(message)",
                sourceLocation: sourceLocation)
        }
        #expect(seconds < 15, "gave up after \(seconds) s", sourceLocation: sourceLocation)
        #expect(first.summary.counts.retried == 0, "\(first.summary.counts)", sourceLocation: sourceLocation)
        #expect(try await fixture.table() == before, "the agency table was written", sourceLocation: sourceLocation)

        let second = try await fixture.run(fixture.settings(pollTimeout: .seconds(10)))
        #expect(second.exitStatus == .completed, "\(second.message ?? "")", sourceLocation: sourceLocation)
        #expect(second.runId == first.runId, "the stopped run is resumed, not replaced", sourceLocation: sourceLocation)
        let messages = fixture.data.rows.count
        #expect(
            second.summary.counts.selected == messages && second.summary.counts.retried == messages,
            "\(second.summary.counts)", sourceLocation: sourceLocation)
        Self.expectCountsAddUp(second.summary.counts, sourceLocation: sourceLocation)
        let accepted = await fixture.sim.ledger().acceptedRetries
        #expect(
            accepted.count == messages && accepted.values.allSatisfy { $0 == 1 }, "\(accepted)", sourceLocation: sourceLocation)
    }

    /// Section 5, exit 69 "Postman unreachable after all backoff": nothing listens at the API URL.
    @Test func nothingListeningAtTheAPIURLExits69AndTheNextRunResumes() async throws {
        let fixture = try await EngineFixture.make(
            databasePrefix: "unreachable", campaigns: 1, messages: 6, mixed: false, seed: 75)
        let held = try NetworkLab.HeldPort()  // refused for the whole test; no other test's server takes it
        defer { held.release() }
        let closed = held.port
        try await expectUnreachableThenResume(
            fixture, apiURL: "http://127.0.0.1:\(closed)/api/v2", problem: ["connection refused", "127.0.0.1:\(closed)/api/v2"])
        await fixture.stop()
    }

    /// Section 5, exit 69: Postman answers every request 503 (the simulator's `error5xxBefore` fault at 1).
    @Test func postmanAnswering503ForeverExits69AndTheNextRunResumes() async throws {
        let fixture = try await EngineFixture.make(
            databasePrefix: "unavailable", campaigns: 1, messages: 6, mixed: false, seed: 76)
        var options = SimulatorOptions()
        options.seed = 76
        options.faults.error5xxBefore = 1
        let failing = try await SimulatorServer.start(data: fixture.data.simulator, options: options)
        do {
            try await expectUnreachableThenResume(fixture, apiURL: failing.baseURL, problem: ["503"])
            let ledger = await failing.ledger()
            #expect(ledger.requests.count > 1 && ledger.requests.allSatisfy { $0.status == 503 }, "tried again with backoff")
            #expect(ledger.acceptedRetries.isEmpty)
        } catch {
            await failing.stop()
            throw error
        }
        await failing.stop()
        await fixture.stop()
    }

    // MARK: api_calls

    /// Section 5: "`api_calls` counts the HTTP requests sent (every attempt, including those answered 429,
    /// which `rate_limited` counts); `retry` counts single-message retry requests". The simulator allows 3
    /// requests a second per campaign while the job is told 10 (so it meets 429s), answers 10% of requests
    /// 503 and drops 5% of connections. The run's counts, in the summary and in the report's summary.json,
    /// must equal the simulator's ledger: all requests, the 429s, single retries, whole-batch retries.
    @Test func apiCallsCountEveryRequestPostmanSawIncluding429s() async throws {
        var options = SimulatorOptions()
        options.seed = 77
        options.timeScale = 20
        options.faults.error5xxBefore = 0.1
        options.faults.dropConnection = 0.05
        let fixture = try await EngineFixture.make(
            databasePrefix: "api_calls", campaigns: 2, messages: 12, mixed: false, rateLimit: 3, options: options)
        let result = try await fixture.run(fixture.settings(pollTimeout: .seconds(15)))
        #expect(result.exitStatus == .completed, "\(result.message ?? "")")
        let ledger = await fixture.sim.ledger()
        #expect(ledger.rateLimited > 0, "the run met no 429: this test proves less than it claims")
        #expect(ledger.requests.contains { $0.status == 503 }, "no 503 was answered")
        let singleRetries = ledger.requests.filter {
            $0.method == "POST" && $0.path.contains("/messages/") && $0.path.hasSuffix("/retry")
        }.count
        let batchRetries = ledger.requests.filter { $0.method == "POST" && $0.path.contains("/batch/") }.count
        let calls = result.summary.apiCalls
        #expect(
            calls.retry + calls.poll + calls.batchRetry == ledger.requests.count,
            "api_calls \(calls) against \(ledger.requests.count) requests in the ledger")
        #expect(calls.rateLimited == ledger.rateLimited, "rate_limited \(calls.rateLimited), ledger \(ledger.rateLimited)")
        #expect(calls.retry == singleRetries, "retry \(calls.retry), single retry requests \(singleRetries)")
        #expect(calls.batchRetry == batchRetries, "batch_retry \(calls.batchRetry), batch retry requests \(batchRetries)")
        #expect(result.summary.counts.retried == 24, "\(result.summary.counts)")

        let report = try await Self.report(fixture, runId: result.runId)
        let json = report.apiCalls
        #expect(
            (json["retry"] ?? 0) + (json["poll"] ?? 0) + (json["batch_retry"] ?? 0) == ledger.requests.count,
            "summary.json api_calls \(json) against \(ledger.requests.count)")
        #expect(json["rate_limited"] == ledger.rateLimited && json["retry"] == singleRetries, "summary.json api_calls \(json)")
        await fixture.stop()
    }

    // MARK: plan

    /// Every table of the job's schema and the agency table: its rows with their tuple versions (any write
    /// changes them, even one that leaves the values as they were), and the job's sequences.
    static func databaseFingerprint(_ fixture: EngineFixture) async throws -> [String: String] {
        var fingerprint: [String: String] = [:]
        let tables: [String] = try await fixture.db.query(
            """
            SELECT schemaname || '.' || tablename AS name FROM pg_tables
            WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1
            """
        ).map { try $0.decode("name") }
        fingerprint["tables"] = tables.joined(separator: ",")
        for table in tables {
            let parts = table.split(separator: ".").map(String.init)
            let row = try await fixture.db.query(
                """
                SELECT count(*)::text || ' ' || coalesce(md5(string_agg(t::text || '@' || t.xmin::text, '|' ORDER BY t::text)), '')
                       AS digest
                FROM \(qualified: parts) t
                """)[0]
            fingerprint[table] = try row.decode("digest")
        }
        for row in try await fixture.db.query(
            "SELECT schemaname || '.' || sequencename AS name, coalesce(last_value::text, '-') AS value FROM pg_sequences")
        {
            fingerprint["sequence " + (try row.decode("name") as String)] = try row.decode("value")
        }
        return fingerprint
    }

    /// Section 5: "`plan` … makes no Postman call and writes nothing". The journal holds a completed run
    /// with pending retries and an unfinished (interrupted) run; the table has every kind of row. `plan`
    /// (the binary) reports its counts, and afterwards the simulator has seen no request and no table of the
    /// job's schema or the agency's has changed a row (nor a sequence moved).
    @Test func planMakesNoPostmanCallAndWritesNothing() async throws {
        let fixture = try await EngineFixture.make(databasePrefix: "plan", campaigns: 2, messages: 18, mixed: true, seed: 78)
        let first = try await fixture.run(fixture.settings(pollTimeout: .seconds(2)))
        #expect(first.summary.counts.pending > 0, "\(first.summary.counts)")
        // A run that selects and is stopped before it sends anything: left unfinished for the next `run`.
        let stopped = try await RetryRun(settings: fixture.settings(), logger: EngineFixture.quietLogger, environment: [:])
            .run(db: fixture.db, stopRequested: { true })
        #expect(stopped.status == "interrupted")
        await fixture.sim.reset()

        let before = try await Self.databaseFingerprint(fixture)
        let exit = try await Self.binary(fixture, ["plan", "--format", "json"])
        #expect(exit.status == 0, "plan exited \(exit.status): \(exit.stderr.suffix(2000))")
        let plan = (try? JSONSerialization.jsonObject(with: Data(exit.stdout.utf8))) as? [String: Any] ?? [:]
        #expect((plan["selected"] as? Int ?? 0) > 0 && (plan["skipped"] as? Int ?? 0) > 0, "plan: \(exit.stdout.prefix(1000))")

        let requests = await fixture.sim.ledger().requests
        #expect(requests.isEmpty, "plan called Postman: \(requests.map { "\($0.method) \($0.path)" })")
        let after = try await Self.databaseFingerprint(fixture)
        let changed = Set(before.keys).union(after.keys).filter { before[$0] != after[$0] }.sorted()
        #expect(changed.isEmpty, "plan changed: \(changed.map { "\($0): \(before[$0] ?? "-") -> \(after[$0] ?? "-")" })")
        await fixture.stop()
    }
}
