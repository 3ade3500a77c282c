import EngineTestSupport
import Foundation
import LibPQ
import PostmanSimulator
import RetryConfig
import RetryCore
import RetryJob
import RetryJournal
import RetrySettings
import SampleData
import Synchronization
import Testing

/// Whole-batch calls at the edges a review found: quiet hours beginning after the batch was committed,
/// and a resumed run whose batch has members still on their way.
@Suite(.serialized) struct WholeBatchEdgeTests {
    /// A wall clock that starts at `start` when first read, then runs with real time.
    final class RunningClock: Sendable {
        let start: Date
        let first = Mutex<ContinuousClock.Instant?>(nil)
        init(start: Date) { self.start = start }
        func now() -> Date {
            let t0 = first.withLock { value -> ContinuousClock.Instant in
                if let value { return value }
                value = .now
                return value!
            }
            return start.addingTimeInterval((ContinuousClock.now - t0) / .seconds(1))
        }
    }

    /// One campaign whose failed rows are all members of one batch, `incident`.
    static func incident(prefix: String, members: Int, seed: UInt64, options: SimulatorOptions, outcome: (Int) -> String)
        async throws -> EngineWorld
    {
        try await EngineWorld.make(
            databasePrefix: prefix, campaigns: 1, messages: members, mixed: false, seed: seed, options: options
        ) { data in
            let campaign = data.simulator.campaigns[0].id
            data.simulator.batches = [.init(id: "incident", campaignId: campaign, status: "messages_enqueued")]
            let order = data.rows.indices.sorted {
                (data.rows[$0].createdAt, data.rows[$0].messageId) < (data.rows[$1].createdAt, data.rows[$1].messageId)
            }
            for (rank, i) in order.enumerated() {
                data.rows[i].batchId = "incident"
                data.rows[i].errorCode = "routing_error"
                data.rows[i].kind = .retrySucceeds
                let sim = data.simulator.messages.firstIndex { $0.id == data.rows[i].messageId }!
                data.simulator.messages[sim].batchId = "incident"
                data.simulator.messages[sim].outcomes = [outcome(rank)]
            }
        }
    }

    /// Quiet hours begin half a second after the worker first reads the clock; every answer comes 1 s late,
    /// so the batch's page, its commit and its call come after. No SMS goes out in quiet hours: the whole
    /// call used to (single retries stopped, the batch call did not look at the clock).
    @Test func quietHoursStopAWholeBatchCall() async throws {
        let options = WorkerLoopSpinTests.simulator(seed: 81, timeScale: 20, lateBy: 1)
        let world = try await Self.incident(prefix: "wbquiet", members: 10, seed: 81, options: options) { _ in "success" }
        var settings = world.settings(pollTimeout: .seconds(20))
        settings.quietHours = try ConfigFile.parse("[quiet_hours]\nstart = \"22:00\"\nend = \"07:00\"\n").quietHours
        let clock = RunningClock(start: try #require(PGTimestamp.parse("2026-12-01T21:59:59.500+08:00")))
        settings.wallClock = { clock.now() }
        settings.wholeBatchRetries = true
        let result = try await world.run(settings)
        let ledger = await world.sim.ledger()
        await world.stop()
        #expect(!ledger.requests.contains { $0.method == "POST" }, "no retry call, whole or single, in quiet hours")
        #expect(ledger.acceptedRetries.isEmpty)
        #expect(result.exitStatus == .completed, "\(result.message ?? "")")
        #expect(result.summary.deferredByQuietHours == 10, "\(result.summary)")
    }

    /// A run stopped after single retries of the three oldest members (a journal chunk of 3: the batch did
    /// not fit, so it went by singles) is resumed with the whole batch in one chunk. Those three are still
    /// on their way (`sent`), and fail again 12–13 s after their retry, between the batch's page and a
    /// whole call. The whole call would retry them a second time in the run; the batch goes by singles.
    @Test func aResumedBatchWithMembersOnTheirWayGoesBySingles() async throws {
        let options = WorkerLoopSpinTests.simulator(seed: 85, timeScale: 1, lateBy: 4)
        let world = try await Self.incident(prefix: "wbinflight", members: 6, seed: 85, options: options) { rank in
            rank < 3 ? "failure:routing_error@\(12 + 0.5 * Double(rank))" : "success@0.5"
        }
        var settings = world.settings(pollTimeout: .seconds(40))
        settings.requestTimeout = .seconds(8)
        settings.journalChunk = 3
        let stop = Mutex(false)
        let watcher = Task {
            while !Task.isCancelled {
                if await world.sim.ledger().acceptedRetries.count >= 3 {
                    stop.withLock { $0 = true }
                    return
                }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        let first = try await world.run(settings, stopRequested: { stop.withLock { $0 } })
        watcher.cancel()
        settings.journalChunk = 10_000
        let second = try await world.run(settings)
        let ledger = await world.sim.ledger()
        await world.stop()
        #expect(second.runId == first.runId, "the stopped run is resumed")
        #expect(ledger.acceptedRetries.count == 6)
        #expect(
            ledger.acceptedRetries.values.allSatisfy { $0 == 1 }, "\(ledger.acceptedRetries): two accepted retries in one run")
        #expect(
            !ledger.requests.contains { $0.path.hasSuffix("/batch/incident/retry") }, "no whole call with members on their way")
    }

    /// Postman documents its batch retry as behaving like Batch Send (enqueued in the background) and its
    /// 201 as "attempted". Here the members are retried 4 s after the 201, the batch `messages_enqueuing`
    /// meanwhile. The members' settling reads (2 s after the answer) show no new attempt yet; they used to
    /// be settled then, by what the batch showed: `batch_not_retryable`, never written, though Postman
    /// retried every one. They are now read again while the batch may still be at work.
    @Test func aBatchRetryThatTakesEffectAfterItsAnswerSettlesEveryMemberAsRetried() async throws {
        var options = SimulatorOptions()
        options.seed = 86
        options.batchRetryDelay = 4
        let world = try await Self.incident(prefix: "wbasync", members: 12, seed: 86, options: options) { _ in "success@0.5" }
        var settings = world.settings(pollTimeout: .seconds(30))
        settings.wholeBatchRetries = true
        let result = try await world.run(settings)
        let ledger = await world.sim.ledger()
        let rows: [String] = try await world.db.query(
            "SELECT concat(status, '/', retry_count) AS row FROM outbound_messages WHERE batch_id = 'incident'"
        ).map { try $0.decode("row") }
        await world.stop()
        #expect(result.exitStatus == .completed, "\(result.message ?? "")")
        #expect(ledger.requests.filter { $0.path.hasSuffix("/batch/incident/retry") }.count == 1)
        #expect(!ledger.requests.contains { $0.method == "POST" && $0.path.contains("/messages/") }, "no single retry")
        #expect(ledger.acceptedRetries.count == 12 && ledger.acceptedRetries.values.allSatisfy { $0 == 1 })
        let counts = result.summary.counts
        #expect(counts.retried == 12 && counts.succeeded == 12 && counts.batchNotRetryable == 0, "\(counts)")
        #expect(rows.count == 12 && rows.allSatisfy { $0 == "success/1" }, "\(rows)")
    }

    /// CONTRACT.md section 4, "just before a retry call the job checks that the row is as it read it", for a
    /// whole-batch call whose mark (`batch_calls.sent_at`, written before the call) is held up 2.5 s (a
    /// trigger sleeps; in production, a journal flush or a lock). Meanwhile the agency flags one member as an
    /// OTP. The call used to go out after the mark on its 2.5 s old check, retrying that member too; it now
    /// waits its turn again, the rows are checked again, and the batch goes by singles without that member.
    @Test func aBatchCallWhoseMarkWasHeldUpChecksItsRowsAgain() async throws {
        var options = SimulatorOptions()
        options.seed = 87
        let world = try await Self.incident(prefix: "wbslowmark", members: 10, seed: 87, options: options) { _ in "success" }
        try await world.db.executeScript(
            """
            CREATE FUNCTION public.slow_first_mark() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF OLD.sent_at IS NULL AND NEW.sent_at IS NOT NULL THEN PERFORM pg_sleep(2.5); END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER slow_first_mark BEFORE UPDATE ON postman_retry.batch_calls
                FOR EACH ROW EXECUTE FUNCTION public.slow_first_mark();
            """)
        var settings = world.settings(pollTimeout: .seconds(20))
        settings.wholeBatchRetries = true
        // The agency's own connection: the run's may wait behind the held-up mark.
        let agency = try await PGConnection.connect(PGConfiguration(url: world.url), logger: EngineFixture.quietLogger)
        let run = Task { try await world.run(settings) }
        let committed = try await WorkerTests.eventually(timeout: .seconds(30)) {
            let n: Int = try await agency.query("SELECT count(*)::int AS n FROM postman_retry.batch_calls")[0].decode("n")
            return n > 0
        }
        #expect(committed, "the batch call was committed")
        let flagged = world.data.rows.first { $0.batchId == "incident" }!.messageId
        try await agency.execute("UPDATE outbound_messages SET is_otp = true WHERE message_id = \(flagged)")
        let result = try await run.value
        await agency.close()
        let ledger = await world.sim.ledger()
        await world.stop()
        #expect(result.exitStatus == .completed, "\(result.message ?? "")")
        #expect(
            ledger.acceptedRetries[flagged] == nil,
            "the member flagged while the call waited was retried \(ledger.requests.map { "\($0.t) \($0.method) \($0.path.suffix(30)) \($0.status)" })"
        )
        #expect(ledger.acceptedRetries.count == 9 && ledger.acceptedRetries.values.allSatisfy { $0 == 1 })
        #expect(result.summary.counts.conflict == 1 && result.summary.counts.retried == 9, "\(result.summary.counts)")
    }
}
