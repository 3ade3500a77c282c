import EngineTestSupport
import Foundation
import LibPQ
import PostmanSimulator
import RetryCore
import RetryJob
import RetryJournal
import RetrySettings
import SampleData
import Synchronization
import Testing

/// The findings of the outside acceptance run (issue 13), each against the real engine, PostgreSQL and
/// the simulator over HTTP. Each failed on the engine before Engine 2.
@Suite(.serialized) struct Engine2Tests {
    /// Rows whose table count lags Postman, with retry calls answered 503 before Postman acted: the old
    /// engine settled the lost answers against the table's count and recorded rows `retried` that never
    /// were. Now every `retried` row has an accepted retry in the ledger and no other does.
    @Test func aLaggingTableUnderLostAnswersIsNeverRecordedRetriedWithoutARetry() async throws {
        var options = SimulatorOptions()
        options.seed = 61
        options.timeScale = 20
        options.faults.error5xxBefore = 0.3
        let fixture = try await EngineFixture.make(campaigns: 1, messages: 30, mixed: false, options: options) { data in
            // Every row says 1 retry; Postman shows 2 (someone else retried).
            for i in data.rows.indices {
                data.rows[i].retryCount = 1
                data.rows[i].kind = .tableLagsPostman
            }
            for i in data.simulator.messages.indices {
                var m = data.simulator.messages[i]
                m.retries = 2
                let first = m.attempts[0]
                m.attempts = [first, first, first]
                m.outcomes = ["failure:routing_error"]
                data.simulator.messages[i] = m
            }
        }
        let result = try await fixture.run(fixture.settings(pollTimeout: .seconds(20)))
        #expect(result.exitStatus == .completed)
        let summary = try await Reliability.checkConverged(fixture, allow429: true)
        let ledger = await fixture.sim.ledger()
        #expect(summary.counts.retried == ledger.acceptedRetries.count, "\(summary.counts)")
        #expect(summary.counts.retried == 30, "every lagging row had one retry left")
        // retry_count = max(1 + 1, Postman's 3)
        #expect(try await fixture.table().values.allSatisfy { $0.retryCount == 3 })
        await fixture.stop()
    }

    /// Postman already shows these rows final, exhausted, unknown or blocked: settled from the list
    /// pages, without a retry call (the old engine spent a refused retry plus a read on each).
    @Test func theStaleMixCostsNoRetryCall() async throws {
        let fixture = try await EngineFixture.make(campaigns: 1, messages: 60, mixed: false, seed: 62, staleShare: 1)
        let result = try await fixture.run(fixture.settings())
        #expect(result.exitStatus == .completed, "\(result.message ?? "")")
        let summary = try await Reliability.checkConverged(fixture)
        let lagging = fixture.data.rows.filter { $0.kind == .tableLagsPostman }.count
        let inBatchCalls = (result.summary.batchCalls ?? []).map(\.members).reduce(0, +)
        #expect(
            result.summary.apiCalls.retry + inBatchCalls == lagging,
            "only the lagging rows, which Postman would retry, get a call")
        #expect(summary.counts.retried == lagging)
        let pages = await fixture.sim.ledger().requests.filter {
            $0.path.hasSuffix("/messages") || $0.path.contains("/messages?")
        }
        #expect(!pages.isEmpty, "Postman's state came from its list pages")
        await fixture.stop()
    }

    /// A stop (SIGTERM) that comes while a list sweep is on its way: no more pages go, and the messages
    /// the sweep still wanted are read one by one in the stop's grace. A first run is killed as it starts
    /// its 8th retry call: 8 intents whose calls may or may not have reached Postman, which only a read
    /// settles (as a lost answer). The rerun's first sweep must walk 9,000 messages of history (10 pages,
    /// 0.3 s an answer) to reach them, and the stop comes on its first page. Before, those intents waited
    /// for pages that never went and were left open for the next run.
    @Test func aStopDuringAListSweepStillSettlesTheIntentsItWanted() async throws {
        var options = SimulatorOptions()
        options.seed = 64
        options.timeScale = 20
        options.faults.slowResponse = 1
        options.faults.slowResponseSeconds = 0.3
        let fixture = try await EngineFixture.make(
            campaigns: 1, messages: 8, mixed: false, rateLimit: 20, options: options, history: 9_000
        ) { data in
            // No batches: one retry call a message, so the crash point counts them.
            for i in data.rows.indices { data.rows[i].batchId = nil }
            for i in data.simulator.messages.indices { data.simulator.messages[i].batchId = nil }
        }
        let campaign = fixture.data.simulator.campaigns[0].id
        let (process, errors) = try CrashResumeTests.launch(
            fixture, ["POSTMAN_RETRY_CRASH_AT": "before-retry-call:8", "POSTMAN_RETRY_TEST_HOOKS": "I_AM_A_TEST"],
            arguments: ["--rate-limit", "20"])
        let crashed = await CrashResumeTests.wait(process, errors)
        #expect(crashed.killed, "the crash hook should have killed the first run: \(crashed.stderr.suffix(800))")
        let beforeRerun = await fixture.sim.ledger()
        let killedAt = beforeRerun.requests.map(\.t).max() ?? 0
        let intents: Int = try await fixture.db.query(
            "SELECT count(*) AS n FROM postman_retry.journal WHERE state = 'intent'")[0].decode("n")
        #expect(intents == 8)

        let stop = StopFlag()
        let run = Task {
            try await fixture.run(
                fixture.settings(pollTimeout: .seconds(20), rateLimits: [campaign: 20]), stopRequested: stop.isSet)
        }
        @Sendable func rerunPages(_ ledger: SimulatorLedger) -> Int {
            ledger.requests.filter { $0.method == "GET" && $0.path.hasSuffix("/messages") && $0.t > killedAt }.count
        }
        let sweeping = try await WorkerTests.eventually(timeout: .seconds(30)) { rerunPages(await fixture.sim.ledger()) > 0 }
        #expect(sweeping, "the rerun should have started its sweep")
        stop.set()
        let result = try await run.value
        let ledger = await fixture.sim.ledger()
        #expect(rerunPages(ledger) < 10, "the stop came before the sweep reached the run's messages")
        #expect(ledger.acceptedRetries == beforeRerun.acceptedRetries, "the rerun sent no retry")
        // Each intent was settled by a read: a call that landed is accepted, one never sent went back to be
        // selected again.
        let open: Int = try await fixture.db.query(
            "SELECT count(*) AS n FROM postman_retry.journal WHERE state = 'intent'")[0].decode("n")
        #expect(open == 0, "intents left unread after the stop (exit \(result.exitStatus))")
        await fixture.stop()
    }

    /// An application sets `is_otp` (or moves the row to another batch) without touching `updated_at`
    /// after the job read the row: the check before the retry sees it; no retry, a conflict.
    @Test func aRowChangedInAColumnTheJobDoesNotWriteIsAConflict() async throws {
        let fixture = try await EngineFixture.make(campaigns: 1, messages: 6, mixed: false, seed: 63)
        // Select, then stop before anything is sent (the first request waits a second after the lock).
        let stopped = try await RetryRun(settings: fixture.settings(), logger: EngineFixture.quietLogger, environment: [:])
            .run(db: fixture.db, stopRequested: { true })
        #expect(stopped.status == "interrupted")
        let otp = fixture.data.rows[0].messageId
        let moved = fixture.data.rows[1].messageId
        try await fixture.db.execute("UPDATE outbound_messages SET is_otp = true WHERE message_id = \(otp)")
        try await fixture.db.execute("UPDATE outbound_messages SET batch_id = 'another-batch' WHERE message_id = \(moved)")
        let result = try await fixture.run(fixture.settings())
        #expect(result.exitStatus == .completed)
        #expect(result.summary.counts.conflict == 2, "\(result.summary.counts)")
        let ledger = await fixture.sim.ledger()
        #expect(ledger.acceptedRetries[otp] == nil && ledger.acceptedRetries[moved] == nil, "an OTP was retried")
        #expect(result.summary.counts.retried == 4)
        await fixture.stop()
    }

    /// `--limit N` selects N new messages next to those carried over from an earlier run (it used to
    /// count the carried-over ones, so only N - K were retried).
    @Test func limitCountsOnlyNewlySelectedMessages() async throws {
        var options = SimulatorOptions()
        options.seed = 64
        options.timeScale = 1
        var later: [SampleData.Row] = []
        let fixture = try await EngineFixture.make(campaigns: 1, messages: 8, mixed: false, options: options) { data in
            for i in data.simulator.messages.indices { data.simulator.messages[i].outcomes = ["success@0.1"] }
            data.simulator.messages[0].outcomes = ["stuck"]
            data.simulator.messages[1].outcomes = ["stuck"]
            later = Array(data.rows[4...])  // in Postman already, in the table only after the first run
            data.rows.removeSubrange(4...)
        }
        // 6 s: the outcomes take 0.1 s and the first poll comes at 0.5 s; 2 s left too little on a loaded machine.
        let first = try await fixture.run(fixture.settings(pollTimeout: .seconds(6)))
        #expect(first.summary.counts.pending == 2 && first.summary.counts.retried == 4)
        try await fixture.db.copyIn(
            PGQuery(
                unsafeSQL: "COPY outbound_messages (\(SampleData.copyColumns.joined(separator: ", "))) FROM STDIN (FORMAT csv)"),
            rows: later.map(\.copyFields))
        var settings = fixture.settings(pollTimeout: .seconds(2))
        settings.scope.limit = 3
        let second = try await fixture.run(settings)
        #expect(second.summary.counts.carriedOver == 2)
        #expect(second.summary.counts.selected == 3, "\(second.summary.counts)")
        #expect(second.summary.counts.retried == 3)
        await fixture.stop()
    }

    /// The live service refuses a source IP that is not whitelisted with 400 `invalid_ip_address_used`:
    /// the run stops at once with 77 (it used to go on calling for every message and exit 0 with all
    /// `rejected`), nothing is counted retried, and the next run resumes.
    @Test func aSourceIPRefusedWith400StopsTheRunWith77() async throws {
        var options = SimulatorOptions()
        options.seed = 66
        options.timeScale = 20
        options.ipWhitelistFailureCampaigns = ["campaign-1"]
        options.ipRefusalAs400 = true
        let fixture = try await EngineFixture.make(campaigns: 1, messages: 12, mixed: false, options: options)
        let result = try await fixture.run(fixture.settings())
        #expect(result.exitStatus == .noPermission, "\(result.message ?? "")")
        #expect(result.status == "interrupted")
        #expect(result.summary.counts.rejected == 0 && result.summary.counts.retried == 0)
        let ledger = await fixture.sim.ledger()
        #expect(ledger.requests.count <= 2, "it went on calling: \(ledger.requests.count) requests")
        let open: Int = try await fixture.db.query(
            "SELECT count(*) AS n FROM postman_retry.journal WHERE state = 'selected'")[0].decode("n")
        #expect(open == 12, "every message is left for the next run")
        await fixture.stop()
    }
}

/// A signal flag for an in-process run (what the binary's SIGTERM handler sets).
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .relaxed) }
    var isSet: @Sendable () -> Bool { { [self] in flag.load(ordering: .relaxed) } }
}
