import Dispatch
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

/// The reliability suite (issue 8): the real binary against a real PostgreSQL and the simulator, under
/// kills, database faults, API faults, concurrency, bad input and signals. `make test` runs it at a
/// small scale; `make test-reliability` (RELIABILITY=full) runs the same scenarios at full scale and
/// writes each scenario's figures to out/reliability.log.
enum Reliability {
    static let full = ProcessInfo.processInfo.environment["RELIABILITY"] == "full"

    /// A line of figures for docs/reliability.md.
    static func record(_ line: String) {
        let text = "reliability: \(line)\n"
        FileHandle.standardError.write(Data(text.utf8))
        guard let path = ProcessInfo.processInfo.environment["RELIABILITY_LOG"] else { return }
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        if let handle = FileHandle(forWritingAtPath: path) {
            handle.seekToEndOfFile()
            handle.write(Data(text.utf8))
            try? handle.close()
        }
    }

    /// What must hold after any scenario, once a run has completed: no message retried twice (or more
    /// than 3 times in all), the table's retry count equal to Postman's, the counts adding up.
    static func checkConverged(
        _ fixture: EngineFixture, db: PGConnection? = nil, allow429: Bool = false,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> RunSummary {
        let db = db ?? fixture.db
        let ledger = await fixture.sim.ledger()
        let twice = ledger.acceptedRetries.filter { $0.value > 1 }
        #expect(twice.isEmpty, "retried twice: \(twice)", sourceLocation: sourceLocation)
        if !allow429 { #expect(ledger.rateLimited == 0, "429s from the job's own pacing", sourceLocation: sourceLocation) }
        let limits = Dictionary(uniqueKeysWithValues: fixture.data.simulator.campaigns.map { ($0.id, $0.rateLimit ?? 10) })
        for (campaign, busiest) in ledger.maxRequestsIn1s {
            #expect(
                busiest <= limits[campaign] ?? 10, "\(campaign): \(busiest) requests in one second",
                sourceLocation: sourceLocation)
        }
        var mismatched: [String] = []
        let postmanBefore = Dictionary(
            fixture.data.simulator.messages.map { ($0.id, $0.retries) }, uniquingKeysWith: { a, _ in a })
        for row in try await db.query("SELECT message_id, retry_count FROM outbound_messages") {
            let id: String = try row.decode("message_id")
            let count: Int = try row.decode("retry_count")
            let original = fixture.data.rows.first { $0.messageId == id }?.retryCount ?? 0
            let postman = ledger.acceptedRetries[id] ?? 0
            // Rows the job did not write keep their count; written ones carry the larger of the row's count
            // plus the job's retry and Postman's count (the table may lag Postman).
            let expected = min(3, max(original + postman, (postmanBefore[id] ?? 0) + postman))
            if postman > 0 && count != expected { mismatched.append("\(id): \(count) vs \(expected)") }
            #expect(count <= 3, sourceLocation: sourceLocation)
        }
        #expect(mismatched.isEmpty, "retry_count differs from Postman's: \(mismatched.prefix(5))", sourceLocation: sourceLocation)
        let runId: Int64 = try await db.query("SELECT max(run_id) AS id FROM postman_retry.runs")[0].decode("id")
        let summary = try await RunSummary.load(db: db, runId: runId)
        #expect(summary.status == "completed" && summary.counts.addsUp, "\(summary.counts)", sourceLocation: sourceLocation)
        try await checkOutcomesByContract(fixture, db: db, runId: runId, sourceLocation: sourceLocation)
        return summary
    }

    /// Every message's recorded outcome against what Postman saw (CONTRACT.md section 4): `retried`
    /// exactly when the simulator accepted a retry for it, and the stale mix settled from Postman's own
    /// state without any retry call.
    static func checkOutcomesByContract(
        _ fixture: EngineFixture, db: PGConnection, runId: Int64, sourceLocation: SourceLocation
    ) async throws {
        let ledger = await fixture.sim.ledger()
        let retryCalls = Set(ledger.requests.filter { $0.method == "POST" }.map(\.path))
        let kinds = Dictionary(fixture.data.rows.map { ($0.messageId, $0.kind) }, uniquingKeysWith: { a, _ in a })
        var wrong: [String] = []
        for row in try await db.query(
            "SELECT message_id, outcome FROM postman_retry.journal WHERE run_id = \(runId) AND origin = 'selected'")
        {
            let id: String = try row.decode("message_id")
            let outcome: String? = try row.optional("outcome")
            let accepted = (ledger.acceptedRetries[id] ?? 0) > 0
            if (outcome == "retried") != accepted { wrong.append("\(id): \(outcome ?? "open"), accepted \(accepted)") }
            let expected: String? =
                switch kinds[id] {
                case .alreadyChangedInPostman: "reconciled"
                case .postmanAtLimit: "exhausted"
                case .unknownToPostman: "not_found"
                case .batchNotRetryable: "batch_not_retryable"
                default: nil
                }
            if let expected {
                if outcome != expected { wrong.append("\(id): \(outcome ?? "open"), want \(expected)") }
                if retryCalls.contains(where: { $0.hasSuffix("/messages/\(id)/retry") }) {  // sample ids are URL-safe
                    wrong.append("\(id): a retry call for a row Postman already settled")
                }
            }
        }
        #expect(wrong.isEmpty, "\(wrong.count) outcomes against the contract: \(wrong.prefix(6))", sourceLocation: sourceLocation)
    }
}

@Suite(.serialized) struct ReliabilityTests {
    typealias Binary = CrashResumeTests

    // MARK: Random kills

    @Test func randomKillsConvergeToTheUninterruptedTable() async throws {
        let campaigns = Reliability.full ? 10 : 3
        let messages = Reliability.full ? 500 : 40
        let kills = Reliability.full ? 55 : 4
        // The stale mix (table lags Postman, Postman already final, exhausted, unknown, batch blocked) on top
        // of one row of every kind per campaign.
        let reference = try await EngineFixture.make(campaigns: campaigns, messages: messages, seed: 41, staleShare: 0.3)
        let started = ContinuousClock.now
        // A poll deadline long enough that no message is left pending by a slow poll on a busy machine:
        // pending depends on timing, and this scenario compares final tables.
        let pollTimeout = Reliability.full ? "60s" : "10s"
        let clean = try await Binary.runBinary(reference, pollTimeout: pollTimeout)
        #expect(clean.status == 0, "\(clean.stderr)")
        let cleanSeconds = (ContinuousClock.now - started).seconds
        let want = Binary.comparable(try await reference.table(), reference)
        let referenceSummary = try await Reliability.checkConverged(reference)
        await reference.stop()

        let fixture = try await EngineFixture.make(campaigns: campaigns, messages: messages, seed: 41, staleShare: 0.3)
        var rng = SplitMix64(seed: 7)
        var killed = 0
        var launches = 0
        let began = ContinuousClock.now
        while launches < kills + 10 {
            launches += 1
            let (process, errors) = try Binary.launch(fixture, pollTimeout: pollTimeout)
            if killed < kills {
                let wait = 0.2 + Double(rng.next() % 2300) / 1000
                try await Task.sleep(for: .seconds(wait))
                if process.isRunning {
                    kill(process.processIdentifier, SIGKILL)
                    killed += 1
                }
            }
            let exit = await Binary.wait(process, errors)
            if exit.status == 0 && !exit.killed { break }
            #expect(exit.killed, "a launch failed without being killed: \(exit.status) \(exit.stderr)")
        }
        let got = Binary.comparable(try await fixture.table(), fixture)
        let mismatches = want.keys.sorted().filter { got[$0] != want[$0] }.map { "\($0): \(got[$0] ?? "-") != \(want[$0]!)" }
        #expect(mismatches.isEmpty, "\(mismatches.count) rows differ from the uninterrupted run: \(mismatches.prefix(5))")
        let summary = try await Reliability.checkConverged(fixture)
        #expect(summary.counts == referenceSummary.counts, "a killed and resumed run counts each message once")
        let runs: Int = try await fixture.db.query("SELECT count(*) AS n FROM postman_retry.runs")[0].decode("n")
        #expect(runs == 1, "every kill resumed the same logical run")
        let ledger = await fixture.sim.ledger()
        Reliability.record(
            "random kills: \(campaigns * messages) messages in \(campaigns) campaigns, \(killed) SIGKILLs over \(launches) launches; "
                + "\(mismatches.count) rows differ from the uninterrupted run; accepted retries \(ledger.acceptedRetries.count), "
                + "max per message \(ledger.acceptedRetries.values.max() ?? 0); 429s \(ledger.rateLimited); "
                + String(
                    format: "uninterrupted %.1f s, killed-and-resumed %.1f s", cleanSeconds, (ContinuousClock.now - began).seconds
                ))
        await fixture.stop()
    }

    // MARK: Database faults

    @Test func aTerminatedConnectionExits75AndTheRerunCompletes() async throws {
        let fixture = try await EngineFixture.make(campaigns: 2, messages: 60, mixed: false, seed: 42)
        let (process, errors) = try Binary.launch(fixture)
        // Mid-run: once it sends (about 6 s of sending follow). A fixed 1.8 s could come before it connected.
        #expect(try await WorkerTests.eventually(timeout: .seconds(30)) { await !fixture.sim.ledger().requests.isEmpty })
        let terminated: Int = try await fixture.db.query(
            """
            SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = 'postman-retry'
            """)[0].decode("n")
        let exit = await Binary.wait(process, errors)
        #expect(terminated >= 1)
        #expect(exit.status == 75, "\(exit.stderr)")
        let rerun = try await Binary.runBinary(fixture)
        #expect(rerun.status == 0, "\(rerun.stderr)")
        let summary = try await Reliability.checkConverged(fixture)
        #expect(summary.counts.retried == 120)
        Reliability.record(
            "pg_terminate_backend mid-run: exit \(exit.status), rerun exit \(rerun.status), \(summary.counts.retried) retried once each"
        )
        await fixture.stop()
    }

    @Test func aStatementTimeoutExits75AndTheRerunCompletes() async throws {
        let fixture = try await EngineFixture.make(campaigns: 1, messages: 10, mixed: false, seed: 43)
        // An agency job holds the table; the job's statements time out after 1.5 s.
        let holder = try await PGConnection.connect(PGConfiguration(url: fixture.url), logger: EngineFixture.quietLogger)
        try await holder.execute("BEGIN")
        try await holder.execute("LOCK TABLE outbound_messages IN ACCESS EXCLUSIVE MODE")
        let (process, errors) = try Binary.launch(
            fixture, databaseURL: fixture.url + " options='-c statement_timeout=1500'")
        let exit = await Binary.wait(process, errors)
        #expect(exit.status == 75, "\(exit.stderr)")
        #expect(exit.stderr.contains("statement or lock timeout"))
        try await holder.execute("COMMIT")
        await holder.close()
        #expect(await fixture.sim.ledger().requests.isEmpty, "nothing was sent while the table could not be read")
        let rerun = try await Binary.runBinary(fixture)
        #expect(rerun.status == 0, "\(rerun.stderr)")
        let summary = try await Reliability.checkConverged(fixture)
        #expect(summary.counts.retried == 10)
        Reliability.record("statement timeout: exit \(exit.status), rerun exit \(rerun.status)")
        await fixture.stop()
    }

    @Test func aPostgreSQLRestartMidRunExits75AndTheRerunCompletes() async throws {
        // A cluster of its own, so restarting it disturbs no other test.
        let cluster = try await PrivateCluster.start()
        defer { cluster.stop() }
        let fixture = try await EngineFixture.make(campaigns: 2, messages: 60, mixed: false, seed: 44, server: cluster.conninfo)
        let (process, errors) = try Binary.launch(fixture)
        #expect(try await WorkerTests.eventually(timeout: .seconds(30)) { await !fixture.sim.ledger().requests.isEmpty })
        try await cluster.restart()
        let exit = await Binary.wait(process, errors)
        #expect(exit.status == 75, "\(exit.stderr)")
        let rerun = try Binary.launch(fixture)
        let rerunExit = await Binary.wait(rerun.0, rerun.1)
        #expect(rerunExit.status == 0, "\(rerunExit.stderr)")
        let db = try await PGConnection.connect(PGConfiguration(url: fixture.url), logger: EngineFixture.quietLogger)
        let summary = try await Reliability.checkConverged(fixture, db: db)
        #expect(summary.counts.retried == 120)
        Reliability.record("pg_ctl restart -m fast mid-run: exit \(exit.status), rerun exit \(rerunExit.status)")
        await db.close()
        await fixture.db.close()
        await fixture.sim.stop()
    }

    // MARK: API faults

    @Test(arguments: [0.1, 0.5])
    func apiFaultsAreResolvedOrLeftPendingNeverDoubleSent(rate: Double) async throws {
        var options = SimulatorOptions()
        options.seed = 45
        options.timeScale = 20
        options.faults.error5xxBefore = rate / 5
        options.faults.error5xxAfterAccept = rate / 5
        options.faults.slowResponse = rate / 10
        options.faults.slowResponseSeconds = 6  // past the job's 5-second request timeout
        options.faults.dropConnection = rate / 5
        options.faults.malformedJSON = rate / 5 + rate / 10
        options.backgroundTraffic = ["campaign-1": 4]  // the agency's live sends: 429s for the job to absorb
        let messages = Reliability.full ? 150 : 25
        let fixture = try await EngineFixture.make(
            campaigns: 2, messages: messages, mixed: false, options: options, staleShare: 0.3)
        let started = ContinuousClock.now
        let exit = try await Binary.runBinary(fixture)
        #expect(exit.status == 0, "\(exit.stderr)")
        let summary = try await Reliability.checkConverged(fixture, allow429: true)
        #expect(summary.counts.selected == 2 * messages)
        // Every retryable message is retried (final or pending); the stale mix is settled from Postman.
        let retryable = fixture.data.rows.filter { [.retrySucceeds, .retryFailsAgain, .tableLagsPostman].contains($0.kind) }
        #expect(summary.counts.retried == retryable.count, "\(summary.counts)")
        let ledger = await fixture.sim.ledger()
        Reliability.record(
            "API faults at \(Int(rate * 100))%: \(2 * messages) messages, \(ledger.requests.count) requests, \(ledger.rateLimited) 429s, "
                + "\(summary.counts.succeeded + summary.counts.failed) final, \(summary.counts.pending) pending, "
                + String(
                    format: "max accepted per message %d, %.1f s", ledger.acceptedRetries.values.max() ?? 0,
                    (ContinuousClock.now - started).seconds))
        await fixture.stop()
    }

    // MARK: Concurrency

    @Test func fiveRunsStartedTogetherOneWorksTheOthersExit75() async throws {
        let fixture = try await EngineFixture.make(campaigns: 1, messages: 12, mixed: false, seed: 46)
        var launched: [(Process, Pipe)] = []
        for _ in 0..<5 { launched.append(try Binary.launch(fixture)) }
        var statuses: [Int32] = []
        for (process, errors) in launched { statuses.append(await Binary.wait(process, errors).status) }
        #expect(statuses.sorted() == [0, 75, 75, 75, 75])
        _ = try await Reliability.checkConverged(fixture)
        Reliability.record("5 runs at once: exits \(statuses.sorted())")
        await fixture.stop()
    }

    // MARK: Signals

    @Test func sigtermAndSigintAtRandomMomentsExit75WithinTenSecondsThenResume() async throws {
        let rounds = Reliability.full ? 12 : 3
        let fixture = try await EngineFixture.make(campaigns: 2, messages: Reliability.full ? 200 : 60, mixed: true, seed: 47)
        var rng = SplitMix64(seed: 9)
        var slowest = 0.0
        var signalled = 0
        for round in 0..<rounds {
            let (process, errors) = try Binary.launch(fixture)
            // From its first connection (its signal handlers are in place by then): a signal 0.4 s after the
            // launch could reach a debug binary on a loaded machine before them, and kill it outright.
            let connected = try await WorkerTests.eventually(timeout: .seconds(30)) {
                try await fixture.db.query(
                    """
                    SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()
                    AND pid <> pg_backend_pid() AND application_name LIKE 'postman-retry%'
                    """)[0].decode("n", as: Int.self) > 0 || !process.isRunning
            }
            #expect(connected, "the job connects to the database")
            try await Task.sleep(for: .seconds(0.3 + Double(rng.next() % 2500) / 1000))
            guard process.isRunning else {
                _ = await Binary.wait(process, errors)
                break
            }
            let at = ContinuousClock.now
            kill(process.processIdentifier, round % 2 == 0 ? SIGTERM : SIGINT)
            signalled += 1
            let exit = await Binary.wait(process, errors)
            let took = (ContinuousClock.now - at).seconds
            slowest = max(slowest, took)
            #expect(exit.status == 75 || exit.status == 0, "\(exit.stderr)")
            #expect(took < 10, "took \(took) s to stop")
        }
        let final = try await Binary.runBinary(fixture)
        #expect(final.status == 0, "\(final.stderr)")
        _ = try await Reliability.checkConverged(fixture)
        let runs: Int = try await fixture.db.query("SELECT count(*) AS n FROM postman_retry.runs")[0].decode("n")
        #expect(runs == 1, "each signalled run was resumed")
        Reliability.record(
            String(format: "signals: %d SIGTERM/SIGINT, slowest exit %.2f s, then a clean resume", signalled, slowest))
        await fixture.stop()
    }

    @Test func sigtermWhileBlockedOnALockedTableStillExits75WithinTenSeconds() async throws {
        let fixture = try await EngineFixture.make(campaigns: 1, messages: 5, mixed: false, seed: 49)
        let holder = try await PGConnection.connect(PGConfiguration(url: fixture.url), logger: EngineFixture.quietLogger)
        try await holder.execute("BEGIN")
        try await holder.execute("LOCK TABLE outbound_messages IN ACCESS EXCLUSIVE MODE")
        let (process, errors) = try Binary.launch(fixture)
        try await Task.sleep(for: .milliseconds(1500))
        let at = ContinuousClock.now
        process.terminate()
        let exit = await Binary.wait(process, errors)
        let took = (ContinuousClock.now - at).seconds
        #expect(exit.status == 75, "\(exit.stderr)")
        #expect(took < 10, "took \(took) s")
        try await holder.execute("ROLLBACK")
        await holder.close()
        let rerun = try await Binary.runBinary(fixture)
        #expect(rerun.status == 0, "\(rerun.stderr)")
        _ = try await Reliability.checkConverged(fixture)
        Reliability.record(String(format: "SIGTERM while blocked on a locked table: exit %d after %.1f s", exit.status, took))
        await fixture.stop()
    }

    // MARK: Secrets

    @Test func theKeyAndFullPhoneNumbersNeverAppearInOutputOrTheProcessList() async throws {
        let fixture = try await EngineFixture.make(campaigns: 2, messages: 12, mixed: true, seed: 48)
        let (process, errors) = try Binary.launch(fixture, arguments: ["--log-format", "json"], logLevel: "trace")
        try await Task.sleep(for: .milliseconds(600))
        let processList = await Self.run("ps -eo args")
        let exit = await Binary.wait(process, errors)
        #expect(exit.status == 0)
        let keys = fixture.data.simulator.campaigns.map(\.apiKey)
        for key in keys {
            #expect(!exit.stderr.contains(key), "the API key is in the log")
            #expect(!processList.contains(key), "the API key is in the process list")
        }
        let numbers = fixture.data.rows.map(\.recipient)
        let leaked = numbers.filter { exit.stderr.contains($0) }
        #expect(leaked.isEmpty, "full phone numbers in the log: \(leaked.prefix(3))")
        let journal = try await fixture.db.query("SELECT string_agg(recipient_masked, ',') AS all FROM postman_retry.journal")[0]
        let masked: String = try journal.decode("all")
        #expect(numbers.allSatisfy { !masked.contains($0) })
        #expect(exit.stderr.count > 1000, "trace logging was on, so there was plenty to leak")
        Reliability.record("secrets: \(exit.stderr.count) bytes of trace log, 0 keys, 0 full numbers")
        await fixture.stop()
    }

    /// Runs a shell command and returns its output. posix_spawn and waitpid rather than Foundation's
    /// Process, and the output through a file rather than a pipe: a server the command starts (pg_ctl)
    /// would inherit a pipe and keep it open for ever.
    /// `shell` on a GCD thread, so the wait never holds one of Swift's two cooperative threads.
    static func run(_ command: String) async -> String {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: shell(command)) }
        }
    }

    static func shell(_ command: String) -> String {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sh-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        let arguments = ["/bin/sh", "-c", "(\(command)) >\(file) 2>&1 </dev/null"]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var pid: pid_t = 0
        guard posix_spawn(&pid, "/bin/sh", nil, nil, &argv, environ) == 0 else { return "posix_spawn failed" }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        return (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
    }
}

/// A PostgreSQL cluster of the test's own (scripts/pg-throwaway.sh), for faults that would disturb
/// other tests sharing the main throwaway server.
struct PrivateCluster {
    let dir: String
    let conninfo: String
    let pgBin: String

    static var script: String { EngineFixture.repoRoot.appendingPathComponent("scripts/pg-throwaway.sh").path }

    /// `durable`: fsync on, with synchronous_commit off as the server's default (scripts/pg-throwaway.sh).
    static func start(durable: Bool = false) async throws -> PrivateCluster {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pr-pg-\(UUID().uuidString.prefix(8))").path
        let output = await ReliabilityTests.run("PG_THROWAWAY_DURABLE=\(durable ? 1 : 0) bash \(script) start \(dir)")
        func value(_ name: String) -> String? {
            output.split(separator: "\n").first { $0.hasPrefix("export \(name)=") }
                .map { String($0.dropFirst("export \(name)=".count)).trimmingCharacters(in: CharacterSet(charactersIn: "'")) }
        }
        guard let host = value("PGHOST"), let port = value("PGPORT"), let bin = value("PG_BIN") else {
            throw JobError(.failure, "could not start a private cluster: \(output)")
        }
        return PrivateCluster(dir: dir, conninfo: "host=\(host) port=\(port) user=postgres", pgBin: bin)
    }

    /// `immediate`: a crash (no checkpoint, no flush of what is not yet on disk), then recovery from WAL.
    func restart(immediate: Bool = false) async throws {
        let output = await ReliabilityTests.run(
            "as=; [ \"$(id -u)\" = 0 ] && as='runuser -u postgres --'; "
                + "$as \(pgBin)/pg_ctl -D \(dir)/data -m \(immediate ? "immediate" : "fast") -w restart -l \(dir)/server.log >/dev/null 2>&1; echo rc=$?"
        )
        guard output.contains("rc=0") else { throw JobError(.failure, "pg_ctl restart failed: \(output)") }
    }

    func stop() { _ = ReliabilityTests.shell("bash \(Self.script) stop \(dir)") }
}
