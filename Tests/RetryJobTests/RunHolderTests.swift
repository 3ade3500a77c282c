import Foundation
import LibPQ
import Logging
import PostgresTestSupport
import PostmanAPI
import RetrySettings
import Synchronization
import Testing

@testable import RetryJob
@testable import RetryJournal  // RunStore.write, to show a fenced write fails

/// The run's hold (`postman_retry.run_holders`) on a real PostgreSQL: who may take it, when a silent
/// holder is replaced, and what a holder that expired can still do.
@Suite struct RunHolderTests {
    static var logger: Logger {
        var logger = Logger(label: "test.hold")
        logger.logLevel = .critical
        return logger
    }

    static func database() async throws -> (PGConnection, PGConnection, String) {
        let (db, url) = try await TestDatabase.connect(prefix: "hold")
        _ = try await Migrator().migrate(db)
        let second = try await PGConnection.connect(PGConfiguration(url: url), logger: TestDatabase.logger)
        return (db, second, url)
    }

    @Test func aLiveHolderKeepsOthersOutAndOneThatGaveUpItsHoldLetsTheNextInAtOnce() async throws {
        let (db, second, _) = try await Self.database()
        let first = try await RunHolder.acquire(
            db: db, workerId: "first", mode: .exclusive, sendDelay: .seconds(5), logger: Self.logger)
        let beating = Task { await first.heartbeats(logger: Self.logger) }
        for mode in [RunHolder.Mode.exclusive, .shared] {
            await #expect(throws: JobError.self) {
                _ = try await RunHolder.acquire(
                    db: second, workerId: "second", mode: mode, sendDelay: .seconds(5), logger: Self.logger)
            }
        }
        beating.cancel()
        _ = await beating.value
        await first.release()
        let started = ContinuousClock.now
        let next = try await RunHolder.acquire(
            db: second, workerId: "next", mode: .exclusive, sendDelay: .seconds(5), logger: Self.logger)
        // A release that did not work costs the row's expiry (5 s); the take itself is a few round trips,
        // one of which took 0.9 s on a loaded machine.
        let returned = ContinuousClock.now
        #expect(returned - started < .seconds(3), "a released hold is free at once")
        // The holder before it released its row after its last request: the contract's second is enough.
        #expect(!next.afterTakeover)
        #expect(next.firstSendAllowed - returned <= .seconds(1), "\(next.firstSendAllowed - returned) before the first request")
        // It holds the run (not `mayStillSend`, which also asks for a renewal in the last 0.9 s: an acquire
        // that took 0.9 s on a loaded machine failed that in one full run).
        #expect(next.lostReason == nil)
        await next.release()
        await db.close()
        await second.close()
    }

    @Test func workersShareTheHoldAndAPlainRunWaitsForThem() async throws {
        let (db, second, url) = try await Self.database()
        let third = try await PGConnection.connect(PGConfiguration(url: url), logger: TestDatabase.logger)
        let w1 = try await RunHolder.acquire(db: db, workerId: "w1", mode: .shared, sendDelay: .seconds(5), logger: Self.logger)
        let w2 = try await RunHolder.acquire(
            db: second, workerId: "w2", mode: .shared, sendDelay: .seconds(5), logger: Self.logger)
        let beats = [w1, w2].map { holder in Task { await holder.heartbeats(logger: Self.logger) } }
        do {
            _ = try await RunHolder.acquire(
                db: third, workerId: "plain", mode: .exclusive, sendDelay: .seconds(5), logger: Self.logger)
            Issue.record("a plain run got in beside two workers")
        } catch let error as JobError {
            #expect(error.status == .temporary)
            #expect(error.message.contains("2 `run --worker` process(es) (w1, w2)"), "\(error.message)")
        }
        for beat in beats {
            beat.cancel()
            _ = await beat.value
        }
        await w1.release()
        await w2.release()
        await db.close()
        await second.close()
        await third.close()
    }

    /// A holder cut off from the database hands requests to its HTTP client until `guardWindow` after its
    /// last renewal, and one may reach Postman `longestSendDelay` later (`request_timeout`, or the connect
    /// wait if longer): a new holder's first request must come at least one second after that. It takes the
    /// row no sooner than `ttl` after that renewal, and waits `1 s + guardWindow + extraWait` from there.
    @Test(arguments: [1, 3, 5, 8, 30])
    func aCutOffHoldersLastRequestIsOutASecondBeforeANewHoldersFirst(requestTimeout: Int) {
        var settings = RunSettings()
        settings.requestTimeout = .seconds(requestTimeout)
        let delay = settings.longestSendDelay
        #expect(delay == max(PostmanClient.connectWait, .seconds(requestTimeout)))
        let lastArrival = RunHolder.guardWindow + delay
        let firstOfTheNext = RunHolder.ttl + .seconds(1) + RunHolder.guardWindow + RunHolder.extraWait(sendDelay: delay)
        // One second, and the guard window's margin for a step of the database's clock.
        #expect(firstOfTheNext - lastArrival >= .seconds(1) + RunHolder.guardWindow)
        #expect(RetryWorker.leaseWait(tookOver: true, sendDelay: delay) == .seconds(1) + delay)
        #expect(RetryWorker.leaseWait(tookOver: false, sendDelay: delay) == .seconds(1))
    }

    @Test func aHolderThatStoppedBeatingIsReplacedWhenItsRowExpires() async throws {
        let (db, second, _) = try await Self.database()
        // A process killed right after taking the hold: its row never beats again.
        _ = try await RunHolder.acquire(db: db, workerId: "killed", mode: .exclusive, sendDelay: .seconds(5), logger: Self.logger)
        let started = ContinuousClock.now
        let next = try await RunHolder.acquire(
            db: second, workerId: "rerun", mode: .exclusive, sendDelay: .seconds(5), logger: Self.logger)
        let returned = ContinuousClock.now
        let waited = returned - started
        #expect(waited >= .seconds(1), "the rerun waited for the row to expire (\(waited))")
        let rows: [String] = try await second.query("SELECT worker_id FROM postman_retry.run_holders").map {
            try $0.decode("worker_id")
        }
        #expect(rows == ["rerun"])
        // The first request of the new holder waits a second, the guard window and the extra wait for a
        // 5 s request timeout past the take, counted from when the take's transaction returned (counted
        // from its start, a transaction slowed by a loaded machine ate into the contract's second: 0.4 s
        // once, more than 0.9 s in a clean-clone CI run).
        let wait = Duration.seconds(1) + RunHolder.guardWindow + RunHolder.extraWait(sendDelay: .seconds(5))
        let left = next.firstSendAllowed - returned  // not after the query below: a slow one ate the margin
        #expect(next.afterTakeover)
        #expect(left > wait - .milliseconds(500) && left <= wait, "\(left) left before the first request")
        await next.release()
        await db.close()
        await second.close()
    }

    /// A takeover is remembered by the database (V011's trigger), not only by the process that did it: a
    /// run that took a dead holder's place and ended early leaves the next one to wait the longer margin,
    /// since the dead holder's requests may still be on their way; a minute and the request timeout later
    /// the second is enough again. Expiry is made by hand (the row's `expires_at` set in the past).
    @Test func aTakeoverByARunThatHasEndedStillMakesTheNextWait() async throws {
        let (db, second, _) = try await Self.database()
        let logger = Self.logger
        func take(_ name: String, on connection: PGConnection) async throws -> (RunHolder, Duration) {
            let holder = try await RunHolder.acquire(
                db: connection, workerId: name, mode: .exclusive, sendDelay: .seconds(5), logger: logger)
            return (holder, holder.firstSendAllowed - .now)
        }
        let longWait = Duration.seconds(1) + RunHolder.takeoverWait(sendDelay: .seconds(5))
        #expect(longWait == .milliseconds(2_800))
        // The first ever take: nobody can be sending.
        let (dead, firstWait) = try await take("dead", on: db)
        #expect(!dead.afterTakeover && firstWait <= .seconds(1))
        // It dies: its row expires and the next run deletes it, then ends at once and gives its row up.
        try await second.execute(
            "UPDATE postman_retry.run_holders SET expires_at = clock_timestamp() - interval '1 second' WHERE worker_id = 'dead'")
        let (early, earlyWait) = try await take("ended-early", on: second)
        #expect(early.afterTakeover && earlyWait > longWait - .milliseconds(500))
        await early.release()
        let (next, nextWait) = try await take("next", on: second)
        #expect(next.afterTakeover, "the takeover by a run that has ended is forgotten")
        #expect(nextWait > longWait - .milliseconds(500), "\(nextWait) before the first request")
        await next.release()
        // A row given up late (it had expired) counts as a takeover too; a row given up in time does not.
        let stamp: () async throws -> Bool = {
            try await second.query("SELECT last_takeover_at IS NOT NULL AS stamped FROM postman_retry.run_gate")[0].decode(
                "stamped")
        }
        try await second.execute("UPDATE postman_retry.run_gate SET last_takeover_at = NULL")
        let (inTime, _) = try await take("in-time", on: second)
        await inTime.release()
        #expect(try await !stamp(), "a row given up in time is no takeover")
        let (late, _) = try await take("late", on: second)
        try await second.execute(
            "UPDATE postman_retry.run_holders SET expires_at = clock_timestamp() - interval '1 second' WHERE worker_id = 'late'")
        await late.release()
        #expect(try await stamp(), "a row given up after it expired is a takeover")
        // Long enough ago (the request timeout and a minute), the second is enough again.
        try await second.execute("UPDATE postman_retry.run_gate SET last_takeover_at = clock_timestamp() - interval '66 seconds'")
        let (later, laterWait) = try await take("later", on: second)
        #expect(!later.afterTakeover && laterWait <= .seconds(1), "\(laterWait) before the first request")
        await later.release()
        await db.close()
        await second.close()
    }

    /// A run that took a dead holder's place and ends early keeps its row until its own first request could
    /// have gone (less the next holder's second): the next holder is then safe from the dead one's requests
    /// without the gate's stamp, which a step of the database's clock could make look old.
    @Test func aHolderThatTookOverKeepsItsRowUntilItsOwnMarginHasPassed() async throws {
        let (db, second, _) = try await Self.database()
        _ = try await RunHolder.acquire(db: db, workerId: "dead", mode: .exclusive, sendDelay: .seconds(5), logger: Self.logger)
        try await second.execute(
            "UPDATE postman_retry.run_holders SET expires_at = clock_timestamp() - interval '1 second' WHERE worker_id = 'dead'")
        let early = try await RunHolder.acquire(
            db: second, workerId: "ended-early", mode: .exclusive, sendDelay: .seconds(5), logger: Self.logger)
        #expect(early.afterTakeover)
        await early.release()
        // The stamp forgotten (as after a forward step of the database's clock): the margin holds without it.
        try await db.execute("UPDATE postman_retry.run_gate SET last_takeover_at = NULL")
        let next = try await RunHolder.acquire(
            db: db, workerId: "next", mode: .exclusive, sendDelay: .seconds(5), logger: Self.logger)
        #expect(!next.afterTakeover)
        #expect(
            next.firstSendAllowed >= early.firstSendAllowed,
            "the next holder may send \(early.firstSendAllowed - next.firstSendAllowed) before the one that took over could")
        await next.release()
        await db.close()
        await second.close()
    }

    /// A request that ended without an answer may still be on its way (a proxy holding it, a lossy
    /// network): giving the hold up soon after counts as a takeover, and the next holder waits the longer margin.
    @Test func aReleaseAfterAnUnansweredRequestMakesTheNextHolderWait() async throws {
        let (db, second, _) = try await Self.database()
        let first = try await RunHolder.acquire(
            db: db, workerId: "first", mode: .exclusive, sendDelay: .seconds(5), logger: Self.logger)
        #expect(!first.afterTakeover)
        first.noteUnansweredRequest()
        await first.release()
        let next = try await RunHolder.acquire(
            db: second, workerId: "next", mode: .exclusive, sendDelay: .seconds(5), logger: Self.logger)
        #expect(next.afterTakeover, "a release right after an unanswered request is no clean one")
        #expect(next.firstSendAllowed - .now > .seconds(2))
        await next.release()
        await db.close()
        await second.close()
    }

    /// Deleting an expired row fires V011's trigger, which updates the gate row. A take holds the gate and
    /// then deletes expired rows; a setup mark or a late release that deleted the row first and the gate second
    /// deadlocked with it (PostgreSQL aborts one of the two). Both now take the gate first.
    @Test func deletingAnExpiredRowBesideATakeDoesNotDeadlock() async throws {
        let (db, second, _) = try await Self.database()
        try await db.execute(
            """
            INSERT INTO postman_retry.run_holders (holder_id, worker_id, exclusive, expires_at)
            VALUES ('dead#1', 'dead', false, clock_timestamp() - interval '1 second'),
                   ('setter#1', 'setter', false, clock_timestamp() + interval '30 seconds')
            """)
        // A take: the gate, a pause (the setup mark starts meanwhile), then the expired rows.
        // The setup mark starts only once the take holds the gate (a fixed sleep let a loaded machine start it
        // first, and the mark then deleted the row itself).
        let gateHeld = Mutex(false)
        let take = Task {
            try await db.withTransaction { db in
                try HolderStore.lockGate(db)
                gateHeld.withLock { $0 = true }
                usleep(600_000)
                return try HolderStore.deleteExpired(db).count
            }
        }
        while !gateHeld.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
        let began = try await second.withTransaction { db in try HolderStore.tryBeginSetup(db, holderId: "setter#1") }
        let deleted = try await take.value
        #expect(began && deleted == 1)
        await db.close()
        await second.close()
    }

    @Test func anExpiredRowIsNeverRevivedAndItsSetupMarkPassesOnWithItsWritesFenced() async throws {
        let (db, second, _) = try await Self.database()
        let w1 = try await RunHolder.acquire(db: db, workerId: "w1", mode: .shared, sendDelay: .seconds(5), logger: Self.logger)
        let w2 = try await RunHolder.acquire(
            db: second, workerId: "w2", mode: .shared, sendDelay: .seconds(5), logger: Self.logger)
        #expect(try await w1.tryBeginSetup())
        #expect(try await !w2.tryBeginSetup(), "one worker at a time opens the run")
        // w1's heartbeats stall past its expiry (a pause, a slow pooler).
        try await second.execute(
            "UPDATE postman_retry.run_holders SET expires_at = clock_timestamp() - interval '1 second' WHERE worker_id = 'w1'")
        #expect(try await w2.tryBeginSetup(), "the mark of a holder that expired passes on")
        #expect(try await !w1.renew(), "an expired row is not revived")
        #expect(!w1.mayStillSend())
        // And the journal writes of the old setter fail their fence.
        var store = RunStore(db: db, table: .reference)
        store.holder = w1.fence
        await #expect(throws: HoldLost.self) { try await store.write { db in try db.execute("SELECT 1") } }
        // Pipelined writes too: there the fence fails on the server, before the statements after it.
        await #expect(throws: HoldLost.self) { try await store.addCalls(run: 1, APICallCounts(retry: 1)) }
        await w2.release()
        await db.close()
        await second.close()
    }

    @Test func anOlderBinaryHoldingTheAdvisoryRunLockKeepsThisOneOut() async throws {
        let (db, second, _) = try await Self.database()
        // What a postman-retry from before V007 holds while it runs.
        try await second.execute("SELECT pg_advisory_lock(\(Int64(0x706D_7272)))")
        do {
            _ = try await RunHolder.acquire(
                db: db, workerId: "new", mode: .exclusive, sendDelay: .seconds(5), logger: Self.logger)
            Issue.record("the new binary ran beside an old one")
        } catch let error as JobError {
            #expect(error.status == .temporary)
            #expect(error.message.contains("older postman-retry"), "\(error.message)")
        }
        await db.close()
        await second.close()
    }
}
