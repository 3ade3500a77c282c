import EngineTestSupport
import Foundation
import LibPQ
import PostgresTestSupport
import PostmanSimulator
import RetryJob
import RetryJournal
import RetrySettings
import SampleData
import Testing

/// A campaign worker's loop must nap until something rings it (an answer, a commit) while it waits, not
/// poll every few milliseconds: with a hundred campaigns a poll is thousands of wake-ups a second, and it
/// happens exactly when the machine is already slow (a database holding a write back, a slow Postman).
@Suite(.serialized) struct WorkerLoopSpinTests {
    /// A journal write slower than the flush interval (here the agency table is locked against the
    /// write-back for 6 s, as a long report query or a table without an index on the message id makes it)
    /// must not make the campaign worker's loop spin while it waits: it naps until something rings it or
    /// one of its own deadlines comes. Before the fix each pass napped 2 ms once the next flush was due.
    @Test func aWriteBackHeldBackDoesNotMakeTheWorkerLoopSpin() async throws {
        // Outcomes in 0.2-2 s (the simulator at its real pace): the worker waits on them, with nothing to
        // send, while its write-back is held back.
        let options = Self.simulator(seed: 83, timeScale: 1)
        let fixture = try await EngineFixture.make(
            databasePrefix: "heldback", campaigns: 1, messages: 10, mixed: false, seed: 83, options: options)
        let locker = try await PGConnection.connect(PGConfiguration(url: fixture.url), logger: EngineFixture.quietLogger)
        try await locker.executeScript("BEGIN; LOCK TABLE outbound_messages IN SHARE MODE")
        let release = Task {
            try await Task.sleep(for: .seconds(6))
            try await locker.executeScript("COMMIT")
        }
        let result = try await fixture.run(fixture.settings())
        try await release.value
        #expect(result.exitStatus == .completed, "\(result.message ?? "")")
        #expect(result.summary.counts.retried == 10)
        let written: Int = try await fixture.db.query(
            "SELECT count(*) AS n FROM postman_retry.journal WHERE write_state = 'written'")[0].decode("n")
        #expect(written == 10, "every outcome written back once the lock went")
        // 686 passes with the 2 ms naps (before fd8a89e), 40 without.
        #expect(result.campaignLoopPasses < 200, "\(result.campaignLoopPasses) passes of the worker's loop")
        await locker.close()
        await fixture.stop()
    }

    /// A stop (SIGTERM) comes while the worker's wave of intents is held back by the database (an agency
    /// transaction holds a lock on the table the intent statement reads). After the 2 s grace the loop
    /// waits for the wave's commit, which rings it as it ends; it used to sleep 20 ms a pass instead (314
    /// passes in these 8 s), for as long as the database was slow, and without bound when the stop was not
    /// a signal (a refusal, a lost lease, a database failure of another campaign end the grace at once).
    @Test func anIntentWaveHeldBackAfterAStopDoesNotMakeTheLoopSpin() async throws {
        // Every answer comes 1 s late: the pre-read's page is on its way while the test takes its lock.
        let options = Self.simulator(seed: 91, timeScale: 20, lateBy: 1)
        let fixture = try await Self.unbatched("loopspin", messages: 12, seed: 91, options: options)
        let stop = StopFlag()
        let run = Task { try await fixture.run(fixture.settings(pollTimeout: .seconds(20)), stopRequested: stop.isSet) }
        // The first request (the look before any retry) has reached Postman: selection is over.
        let started = try await WorkerTests.eventually(timeout: .seconds(30)) { await !fixture.sim.ledger().requests.isEmpty }
        #expect(started)
        let locker = try await PGConnection.connect(PGConfiguration(url: fixture.url), logger: EngineFixture.quietLogger)
        let watcher = try await PGConnection.connect(PGConfiguration(url: fixture.url), logger: EngineFixture.quietLogger)
        try await locker.executeScript("BEGIN; LOCK TABLE outbound_messages IN ACCESS EXCLUSIVE MODE")
        // The wave's intent statement waits for the lock (looked at on a connection of its own: the run's
        // connection is the one waiting).
        let waiting = try await WorkerTests.eventually(timeout: .seconds(10)) {
            let rows = try await watcher.query(
                "SELECT count(*) AS n FROM pg_locks WHERE NOT granted AND relation = 'outbound_messages'::regclass")
            return try rows[0].decode("n", as: Int.self) > 0
        }
        #expect(waiting, "the intent statement should be waiting on the lock")
        stop.set()
        try await Task.sleep(for: .seconds(8))
        try await locker.executeScript("COMMIT")
        let result = try await run.value
        await locker.close()
        await watcher.close()
        #expect(result.status == "interrupted", "\(result.message ?? "")")
        #expect(await fixture.sim.ledger().acceptedRetries.isEmpty, "no retry after the stop")
        // A loop that naps until the refill rings it (or a quarter second) passes ~40 times in 8 s.
        #expect(result.campaignLoopPasses < 200, "\(result.campaignLoopPasses) passes of the worker's loop in 8 s of waiting")
        print("loop passes: intent wave held back 8 s after a stop: \(result.campaignLoopPasses) loop passes")
        await fixture.stop()
    }

    /// While a list sweep's page is on its way no read goes, so the next look's time, set when the sweep
    /// began, can pass before the page is in; the loop napped until it, 2 ms a pass, until the page came
    /// back (2,919 passes for 49 requests here, with Postman answering 2 s late).
    @Test func aSlowListPageDoesNotMakeTheLoopSpin() async throws {
        let (passes, bound, line) = try await slowPostman(sweeps: true)
        print("loop passes: slow pages, sweeps: \(line)")
        #expect(passes < bound, "\(line)")
    }

    /// The control: the same slow Postman, but the campaign's table is so large that single reads are
    /// cheaper than pages (no sweep): the loop stays quiet.
    @Test func controlSlowPostmanWithoutSweepsDoesNotSpin() async throws {
        let (passes, bound, line) = try await slowPostman(sweeps: false)
        print("loop passes: slow pages, single reads only: \(line)")
        #expect(passes < bound, "\(line)")
    }

    /// The hold's heartbeat is held back (another session holds its row's lock) for 4 s, less than the
    /// hold's 5 s lifetime: after 0.9 s no worker may send until a renewal gets through, and nothing rings
    /// them when it does. Each worker looks again after 20 ms, then less often, not every 20 ms for as long
    /// as the database is slow.
    @Test func aLateHeartbeatDoesNotMakeTheWorkersPoll() async throws {
        let options = Self.simulator(seed: 93, timeScale: 20)
        let fixture = try await EngineFixture.make(
            databasePrefix: "loopbeat", campaigns: 8, messages: 60, mixed: false, seed: 93, options: options)
        let clock = ContinuousClock()
        let began = clock.now
        let run = Task { try await fixture.run(fixture.settings()) }
        let started = try await WorkerTests.eventually(timeout: .seconds(30)) { await !fixture.sim.ledger().requests.isEmpty }
        #expect(started)
        let locker = try await PGConnection.connect(PGConfiguration(url: fixture.url), logger: EngineFixture.quietLogger)
        // NO KEY UPDATE stops the renewal (an UPDATE of the row) but not the journal's fence (KEY SHARE).
        try await locker.executeScript("BEGIN; SELECT 1 FROM postman_retry.run_holders FOR NO KEY UPDATE")
        try await Task.sleep(for: .seconds(4))
        try await locker.executeScript("COMMIT")
        let result = try await run.value
        let seconds = (clock.now - began) / .seconds(1)
        await locker.close()
        let ledger = await fixture.sim.ledger()
        #expect(result.exitStatus == .completed, "\(result.message ?? "")")
        #expect(result.summary.counts.retried == 480, "\(result.summary.counts)")
        #expect(ledger.acceptedRetries.values.allSatisfy { $0 == 1 }, "one accepted retry per message")
        // Each request costs a pass or two, and each of the eight workers looks about four times a second
        // while it waits on answers. Polling every 20 ms for the 1.5 s they may not send adds about 600
        // passes: 1,749 for 438 requests in 8 s, against 1,133 for 433 in 9 s with the longer looks.
        let bound = 3 * ledger.requests.count + Int(3 * 8 * seconds)
        let line = "\(result.campaignLoopPasses) loop passes, \(ledger.requests.count) requests, \(Int(seconds)) s"
        print("loop passes: heartbeat held back 4 s: \(line)")
        #expect(result.campaignLoopPasses < bound, "\(line)")
        await fixture.stop()
    }

    /// Carried-over retries whose deadline (`--poll-timeout 1s` from the run's start) passes before their
    /// one look, while Postman answers 2 s late: their past deadline made every pass of the loop scan them
    /// and nap 2 ms (1,083 passes for 47 requests in 18 s; found by review of abf65f3).
    @Test func aCarriedOverRetryPastItsDeadlineDoesNotMakeTheLoopSpin() async throws {
        let options = Self.simulator(seed: 12, timeScale: 1, lateBy: 2)
        let fixture = try await Self.unbatched("loopcarried", messages: 30, seed: 12, options: options, stuck: true)
        var settings = fixture.settings(pollTimeout: .seconds(1))
        settings.wholeBatchRetries = false
        settings.scope = RunScope(limit: 5)
        let first = try await fixture.run(settings)
        #expect(first.summary.counts.pending == 5)
        settings.scope = RunScope()
        let clock = ContinuousClock()
        let began = clock.now
        let before = await fixture.sim.ledger().requests.count
        let second = try await fixture.run(settings)
        let seconds = (clock.now - began) / .seconds(1)
        let requests = await fixture.sim.ledger().requests.count - before
        await fixture.stop()
        #expect(second.summary.counts.carriedOver == 5)
        let line = "\(second.campaignLoopPasses) loop passes, \(requests) requests, \(Int(seconds)) s"
        print("loop passes: carried over past their deadline: \(line)")
        #expect(second.campaignLoopPasses < 3 * requests + Int(8 * seconds), "\(line)")
    }

    /// A run stopped with 250 accepted retries is resumed after their deadlines passed (the next night):
    /// each needs one look, which list pages give a thousand at a time. They went one read each.
    @Test func aResumedRunLooksAtRetriesPastTheirDeadlineByPages() async throws {
        let options = Self.simulator(seed: 21, timeScale: 1)
        let fixture = try await Self.unbatched(
            "loopresume", messages: 300, seed: 21, options: options, rateLimit: 200, stuck: true)
        let campaign = fixture.data.simulator.campaigns[0].id
        var settings = fixture.settings(pollTimeout: .seconds(60), rateLimits: [campaign: 100])
        settings.wholeBatchRetries = false
        let stop = StopFlag()
        let fast = settings
        let run = Task { try await fixture.run(fast, stopRequested: stop.isSet) }
        let many = try await WorkerTests.eventually(timeout: .seconds(60)) {
            await fixture.sim.ledger().acceptedRetries.count >= 250
        }
        #expect(many)
        stop.set()
        _ = try await run.value
        try await fixture.db.execute(
            """
            UPDATE postman_retry.journal SET accepted_at = now() - interval '2 hours',
                   poll_deadline = now() - interval '90 minutes'
            WHERE state = 'accepted'
            """)
        let restoredIds = Set(
            try await fixture.db.query("SELECT message_id FROM postman_retry.journal WHERE state = 'accepted'").map {
                try $0.decode("message_id", as: String.self)
            })
        let restored = restoredIds.count
        let before = await fixture.sim.ledger().requests.count
        settings.campaignRateLimits = [campaign: 10]
        settings.pollTimeout = .seconds(3)  // the rest of the run's own retries: not waited on for a minute
        let second = try await fixture.run(settings)
        let requests = await fixture.sim.ledger().requests.dropFirst(before)
        await fixture.stop()
        let pages = requests.filter { $0.method == "GET" && $0.path.hasSuffix("/messages") }.count
        // Single reads of the restored retries (the run's own new retries are polled as usual).
        let reads = requests.filter {
            $0.method == "GET" && restoredIds.contains(String($0.path.split(separator: "/").last ?? ""))
        }
        .count
        #expect(second.exitStatus == .completed, "\(second.message ?? "")")
        #expect(restored >= 250)
        #expect(reads < restored / 10, "\(reads) single reads and \(pages) pages for \(restored) restored retries")
    }

    /// One campaign of plain failures sent without batches (single retries only); `stuck`: outcomes that
    /// never come, so the retries are polled until their deadlines.
    static func unbatched(
        _ prefix: String, messages: Int, seed: UInt64, options: SimulatorOptions, rateLimit: Int? = nil, stuck: Bool = false
    ) async throws -> EngineFixture {
        try await EngineFixture.make(
            databasePrefix: prefix, campaigns: 1, messages: messages, mixed: false, seed: seed, rateLimit: rateLimit,
            options: options
        ) { data in
            for i in data.rows.indices { data.rows[i].batchId = nil }
            for i in data.simulator.messages.indices {
                data.simulator.messages[i].batchId = nil
                if stuck { data.simulator.messages[i].outcomes = ["stuck"] }
            }
        }
    }

    /// The simulator's options; with `lateBy`, every request is answered that many seconds late.
    static func simulator(seed: UInt64, timeScale: Double, lateBy seconds: Double? = nil) -> SimulatorOptions {
        var options = SimulatorOptions()
        options.seed = seed
        options.timeScale = timeScale
        if let seconds {
            options.faults.slowResponse = 1
            options.faults.slowResponseSeconds = seconds
        }
        return options
    }

    func slowPostman(sweeps: Bool) async throws -> (Int, Int, String) {
        let options = Self.simulator(seed: 92, timeScale: 1, lateBy: 2)
        let fixture = try await EngineFixture.make(
            databasePrefix: "loopsweep", campaigns: 1, messages: 40, mixed: false, seed: 92, rateLimit: 20,
            options: options, history: 2_500
        ) { data in
            for i in data.rows.indices { data.rows[i].batchId = nil }
            for i in data.simulator.messages.indices {
                data.simulator.messages[i].batchId = nil
                // Outcomes that never come: the worker polls them until their deadline.
                if !data.simulator.messages[i].id.hasPrefix("old_") { data.simulator.messages[i].outcomes = ["stuck"] }
            }
        }
        let campaign = fixture.data.simulator.campaigns[0].id
        if !sweeps {
            // 45 pages' worth of delivered rows: one read a message is cheaper than a sweep.
            try await fixture.db.execute(
                """
                INSERT INTO outbound_messages (campaign_id, message_id, recipient, status, created_at)
                SELECT \(campaign), 'delivered_' || g, '6590000000', 'success', now() - interval '40 days'
                FROM generate_series(1, 45000) g
                """)
        }
        let clock = ContinuousClock()
        let began = clock.now
        let result = try await fixture.run(fixture.settings(pollTimeout: .seconds(12), rateLimits: [campaign: 20]))
        let seconds = (clock.now - began) / .seconds(1)
        let ledger = await fixture.sim.ledger()
        let pages = ledger.requests.filter { $0.method == "GET" && $0.path.hasSuffix("/messages") }.count
        #expect(result.exitStatus == .completed, "\(result.message ?? "")")
        await fixture.stop()
        // Each request costs a pass or two (its send, its answer's ring), and a waiting loop looks at most
        // four times a second; 2 ms naps show as hundreds of passes a second.
        let bound = 3 * ledger.requests.count + Int(8 * seconds)
        let line =
            "\(result.campaignLoopPasses) loop passes, \(ledger.requests.count) requests (\(pages) pages), \(Int(seconds)) s"
        return (result.campaignLoopPasses, bound, line)
    }
}
