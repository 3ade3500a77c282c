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

/// The real `postman-retry` binary, killed with SIGKILL at chosen points (the crash hook
/// `POSTMAN_RETRY_CRASH_AT`), then run again: the final table must equal an uninterrupted run's
/// and the simulator's ledger must show no message retried twice.
@Suite(.serialized) struct CrashResumeTests {
    static var binary: String {
        ProcessInfo.processInfo.environment["POSTMAN_RETRY_BIN"]
            ?? EngineFixture.repoRoot.appendingPathComponent(".build/debug/postman-retry").path
    }

    struct Exit {
        var status: Int32
        var killed: Bool
        var stderr: String
    }

    static func launch(
        _ fixture: EngineFixture, _ extra: [String: String] = [:], arguments: [String] = [], databaseURL: String? = nil,
        logLevel: String = "error", pollTimeout: String = "3s"
    ) throws -> (Process, Pipe) {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw JobError(.failure, "\(binary) is missing: build it first (`make test` does)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments =
            ["run", "--poll-timeout", pollTimeout, "--log-level", logLevel, "--database-url", databaseURL ?? fixture.url]
            + arguments
        var environment = ProcessInfo.processInfo.environment.filter { $0.key.hasPrefix("PG") || $0.key == "PATH" }
        environment.merge(fixture.keysEnvironment) { $1 }
        environment["POSTMAN_API_URL"] = fixture.sim.baseURL
        environment.merge(extra) { $1 }
        process.environment = environment
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        return (process, errors)
    }

    /// Waits on a GCD thread: a blocking read on one of Swift's cooperative threads (two on these
    /// machines) would starve the in-process simulator the binary is talking to.
    static func wait(_ process: Process, _ errors: Pipe) async -> Exit {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                let data = errors.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                continuation.resume(
                    returning: Exit(
                        status: process.terminationStatus, killed: process.terminationReason == .uncaughtSignal,
                        stderr: String(decoding: data, as: UTF8.self)))
            }
        }
    }

    static func runBinary(_ fixture: EngineFixture, _ extra: [String: String] = [:], pollTimeout: String = "3s") async throws
        -> Exit
    {
        let (process, errors) = try launch(fixture, extra, pollTimeout: pollTimeout)
        return await wait(process, errors)
    }

    static func runBinaryWith(_ fixture: EngineFixture, arguments: [String]) async throws -> Exit {
        let (process, errors) = try launch(fixture, arguments: arguments)
        return await wait(process, errors)
    }

    /// The table an uninterrupted run leaves, for the same data and seed.
    /// The poll deadline of the converging runs: the first poll comes 2 s after acceptance, and with a 3 s
    /// deadline a poll held up a second on a loaded machine left a row at `created` in one run, not the other.
    static let convergingPollTimeout = "6s"

    static func reference() async throws -> [String: EngineFixture.RowState] {
        let fixture = try await EngineFixture.make(seed: 21)
        let exit = try await runBinary(fixture, pollTimeout: convergingPollTimeout)
        #expect(exit.status == 0, "uninterrupted run failed: \(exit.stderr)")
        let table = try await fixture.table()
        await fixture.stop()
        return table
    }

    /// Stuck messages end pending with whatever in-flight status was seen last; compare the rest exactly.
    static func comparable(_ table: [String: EngineFixture.RowState], _ fixture: EngineFixture) -> [String: String] {
        var out: [String: String] = [:]
        for (id, state) in table {
            out[id] = fixture.kind(of: id) == .retryStuck ? "pending/\(state.retryCount)" : state.description
        }
        return out
    }

    @Test(arguments: [
        "after-intent:1", "after-intent:2", "before-retry-call:5", "after-retry-call:2", "after-retry-call:9",
        "after-record-accepted:1", "before-write-back:2", "after-write-back:1"
    ])
    func killedAtAChosenPointThenRerunConvergesToTheSameTable(point: String) async throws {
        let expected = try await Self.reference()
        let fixture = try await EngineFixture.make(seed: 21)
        let crashed = try await Self.runBinary(
            fixture, ["POSTMAN_RETRY_CRASH_AT": point, "POSTMAN_RETRY_TEST_HOOKS": "I_AM_A_TEST"],
            pollTimeout: Self.convergingPollTimeout)
        #expect(crashed.killed && crashed.status == SIGKILL, "the crash point \(point) was not reached: \(crashed.stderr)")
        let resumed = try await Self.runBinary(fixture, pollTimeout: Self.convergingPollTimeout)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let table = try await fixture.table()
        let got = Self.comparable(table, fixture)
        let want = Self.comparable(expected, fixture)
        let mismatches = want.keys.sorted().filter { got[$0] != want[$0] }.map { "\($0): \(got[$0] ?? "-") != \(want[$0]!)" }
        #expect(mismatches.isEmpty, "\(mismatches)")
        let ledger = await fixture.sim.ledger()
        #expect(ledger.acceptedRetries.values.allSatisfy { $0 == 1 }, "a message was retried twice")
        #expect(ledger.rateLimited == 0)
        let runs = try await fixture.db.execute("SELECT count(*) AS n, max(attempts) AS attempts FROM postman_retry.runs")[0]
        #expect(try runs.decode("n", as: Int.self) == 1, "a killed run is resumed, not replaced")
        #expect(try runs.decode("attempts", as: Int.self) == 2)
        let summary = try await RunSummary.load(db: fixture.db, runId: 1)
        #expect(summary.counts.addsUp && summary.status == "completed")
        await fixture.stop()
    }

    @Test func sigtermExits75QuicklyAndTheNextRunFinishes() async throws {
        let fixture = try await EngineFixture.make(campaigns: 2, messages: 30, mixed: false, seed: 4)
        let (process, errors) = try Self.launch(fixture, arguments: ["--rate-limit", "5"])
        // While it sends (60 retries at 5/s each: six seconds): a fixed sleep could signal a run not yet opened.
        #expect(try await WorkerTests.eventually(timeout: .seconds(30)) { await !fixture.sim.ledger().requests.isEmpty })
        let signalled = ContinuousClock.now
        process.terminate()
        let exit = await Self.wait(process, errors)
        #expect(exit.status == 75, "\(exit.stderr)")
        #expect(ContinuousClock.now - signalled < .seconds(10))
        let status: String? = try await fixture.db.execute("SELECT status FROM postman_retry.runs").first?.decode("status")
        #expect(status == "interrupted")
        // The interrupted run's summary adds up too (CONTRACT.md section 5): what it has not settled is
        // counted apart, as `unsettled`, and the selected messages are all accounted for.
        let runId: Int64 = try await fixture.db.execute("SELECT run_id FROM postman_retry.runs")[0].decode("run_id")
        let stopped = try await RunSummary.load(db: fixture.db, runId: runId)
        #expect(stopped.counts.addsUp, "\(stopped.counts)")
        #expect(stopped.counts.selected + (stopped.counts.unsettled ?? 0) == 60, "\(stopped.counts)")
        #expect((stopped.counts.unsettled ?? 0) > 0, "stopped while sending, yet nothing was left: \(stopped.counts)")
        for campaign in stopped.campaigns {
            #expect(
                campaign.selected == campaign.retried + campaign.exhausted + campaign.notFound + campaign.reconciled
                    + campaign.batchNotRetryable + campaign.rejected + campaign.conflict, "\(campaign)")
        }
        let resumed = try await Self.runBinary(fixture)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let ledger = await fixture.sim.ledger()
        #expect(ledger.acceptedRetries.count == 60 && ledger.acceptedRetries.values.allSatisfy { $0 == 1 })
        await fixture.stop()
    }

    @Test func twoRunsStartedTogetherOneWorksTheOtherExits75() async throws {
        let fixture = try await EngineFixture.make(campaigns: 1, messages: 12, mixed: false, seed: 6)
        let (a, aErrors) = try Self.launch(fixture)
        let (b, bErrors) = try Self.launch(fixture)
        let exits = [await Self.wait(a, aErrors), await Self.wait(b, bErrors)].map(\.status).sorted()
        #expect(exits == [0, 75])
        let ledger = await fixture.sim.ledger()
        #expect(ledger.acceptedRetries.count == 12 && ledger.acceptedRetries.values.allSatisfy { $0 == 1 })
        await fixture.stop()
    }
}
