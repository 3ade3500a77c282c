import EngineTestSupport
import Foundation
import LibPQ
import PostmanAPI
import PostmanSimulator
import RetryCore
import RetryJob
import RetryJournal
import RetrySettings
import Testing

/// `run --worker`: several processes share one run through campaign leases in PostgreSQL.
@Suite(.serialized) struct WorkerTests {
    typealias Binary = CrashResumeTests

    static func worker(_ name: String, ttl: String = "3s", extra: [String] = []) -> [String] {
        ["--worker", "--worker-id", name, "--lease-ttl", ttl] + extra
    }

    /// Waits until `condition` holds (checked every 50 ms) or `timeout` passes; returns whether it held.
    static func eventually(
        timeout: Duration = .seconds(20), _ condition: () async throws -> Bool
    ) async throws -> Bool {
        let end = ContinuousClock.now + timeout
        while ContinuousClock.now < end {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    @Test func threeWorkersOneKilledMidRunFinishTheRunWithoutDoubleSends() async throws {
        let campaigns = Reliability.full ? 12 : 6
        let messages = Reliability.full ? 200 : 40
        let fixture = try await EngineFixture.make(campaigns: campaigns, messages: messages, mixed: false, seed: 61)
        let names = ["w1", "w2", "w3"]
        var launched: [(Process, Pipe)] = []
        for name in names {
            launched.append(
                try Binary.launch(
                    fixture, arguments: Self.worker(name), logLevel: "info", pollTimeout: Reliability.full ? "60s" : "15s"))
        }
        // Kill w2 while it holds a lease on a campaign it has not finished.
        let holding = try await Self.eventually {
            let n: Int = try await fixture.db.query(
                "SELECT count(*) AS n FROM postman_retry.campaign_leases WHERE worker_id = 'w2' AND NOT done")[0].decode("n")
            return n > 0
        }
        #expect(holding, "w2 never took a lease")
        try await Task.sleep(for: .milliseconds(700))
        kill(launched[1].0.processIdentifier, SIGKILL)

        var exits: [String: Binary.Exit] = [:]
        for (name, (process, errors)) in zip(names, launched) { exits[name] = await Binary.wait(process, errors) }
        #expect(exits["w2"]?.killed == true)
        for name in ["w1", "w3"] {
            #expect(exits[name]?.status == 0, "\(name): \(exits[name]?.stderr.suffix(2000) ?? "")")
        }
        let takeovers: Int = try await fixture.db.query(
            "SELECT coalesce(sum(takeovers), 0)::int AS n FROM postman_retry.campaign_leases")[0].decode("n")
        #expect(takeovers >= 1, "a surviving worker took over w2's lease")
        let stderr = exits.values.map(\.stderr).joined()
        #expect(stderr.contains("took over an expired lease"))
        let summary = try await Reliability.checkConverged(fixture)
        #expect(summary.counts.selected == campaigns * messages)
        let ledger = await fixture.sim.ledger()
        #expect(ledger.acceptedRetries.count == summary.counts.retried)
        // Every campaign was worked by at least one of the workers, and each worker worked some.
        let holders: [String] = try await fixture.db.query(
            "SELECT DISTINCT worker_id FROM postman_retry.campaign_leases WHERE worker_id IS NOT NULL"
        ).map { try $0.decode("worker_id") }
        #expect(Set(holders).isSubset(of: Set(names)) && holders.count >= 2, "\(holders)")
        Reliability.record(
            "3 workers on \(campaigns * messages) messages in \(campaigns) campaigns, w2 killed holding a lease: exits w1 \(exits["w1"]?.status ?? -1), w3 \(exits["w3"]?.status ?? -1); "
                + "\(takeovers) takeover(s); \(ledger.acceptedRetries.count) accepted retries, max per message "
                + "\(ledger.acceptedRetries.values.max() ?? 0); busiest campaign second \(ledger.maxRequestsIn1s.values.max() ?? 0); 429s \(ledger.rateLimited)"
        )
        await fixture.stop()
    }

    @Test func aPlainRunAndWorkersExcludeEachOther() async throws {
        let fixture = try await EngineFixture.make(campaigns: 1, messages: 40, mixed: false, seed: 62)
        let (worker, workerErrors) = try Binary.launch(fixture, arguments: Self.worker("only"), pollTimeout: "10s")
        let joined = try await Self.eventually {
            let n: Int = try await fixture.db.query("SELECT count(*) AS n FROM postman_retry.campaign_leases")[0].decode("n")
            return n > 0
        }
        #expect(joined)
        let plain = try await Binary.runBinary(fixture)
        #expect(plain.status == 75, "a plain run while a worker works: \(plain.stderr)")
        #expect(plain.stderr.contains("holds the lock"))
        let workerExit = await Binary.wait(worker, workerErrors)
        #expect(workerExit.status == 0, "\(workerExit.stderr)")
        _ = try await Reliability.checkConverged(fixture)
        await fixture.stop()
    }

    @Test func aWorkerStoppedBySIGTERMFreesItsLeasesAtOnce() async throws {
        let fixture = try await EngineFixture.make(campaigns: 2, messages: 40, mixed: false, seed: 65)
        // A TTL far longer than the test: the second worker can only start at once if the leases were freed.
        let (first, firstErrors) = try Binary.launch(fixture, arguments: Self.worker("first", ttl: "120s"), pollTimeout: "10s")
        let holding = try await Self.eventually {
            let n: Int = try await fixture.db.query(
                "SELECT count(*) AS n FROM postman_retry.campaign_leases WHERE worker_id = 'first'")[0].decode("n")
            return n == 2
        }
        #expect(holding, "the first worker took both campaigns")
        try await Task.sleep(for: .milliseconds(1500))
        let signalled = ContinuousClock.now
        kill(first.processIdentifier, SIGTERM)
        let firstExit = await Binary.wait(first, firstErrors)
        #expect(firstExit.status == 75, "\(firstExit.stderr)")
        #expect(ContinuousClock.now - signalled < .seconds(10))
        let held: Int = try await fixture.db.query(
            "SELECT count(*) AS n FROM postman_retry.campaign_leases WHERE worker_id IS NOT NULL AND NOT done")[0].decode("n")
        #expect(held == 0, "a stopped worker leaves no lease behind")
        let status: String = try await fixture.db.query("SELECT status FROM postman_retry.runs")[0].decode("status")
        #expect(status == "interrupted", "the last worker to stop records the run as interrupted")

        let started = ContinuousClock.now
        let (second, secondErrors) = try Binary.launch(fixture, arguments: Self.worker("second", ttl: "120s"), pollTimeout: "10s")
        let secondExit = await Binary.wait(second, secondErrors)
        #expect(secondExit.status == 0, "\(secondExit.stderr)")
        #expect(ContinuousClock.now - started < .seconds(60), "the second worker did not wait for the first one's TTL")
        _ = try await Reliability.checkConverged(fixture)
        await fixture.stop()
    }

    /// CONTRACT.md section 7 across workers: a worker cut off from the database may have handed requests to
    /// its HTTP client just before it stopped sending, and such a request can reach Postman up to
    /// `longestSendDelay` later. The worker that takes its expired lease therefore waits that long plus one
    /// second before its first request for the campaign (it waited one second).
    @Test func aWorkerThatTakesOverAnExpiredLeaseWaitsOutTheOldHoldersSendDelay() async throws {
        // Stale rows and unknown ids beside the plain failures, at 5 requests a second: still sending at the kill.
        let fixture = try await EngineFixture.make(
            campaigns: 1, messages: 80, mixed: true, seed: 66, rateLimit: 5, staleShare: 0.3)
        let (first, firstErrors) = try Binary.launch(
            fixture, arguments: Self.worker("first", extra: ["--rate-limit", "5"]), pollTimeout: "15s")
        let sending = try await Self.eventually { await fixture.sim.ledger().requests.count >= 10 }
        #expect(sending, "the first worker sends")
        kill(first.processIdentifier, SIGKILL)
        let killedAt = fixture.sim.secondsSinceStart
        #expect(await Binary.wait(first, firstErrors).killed)
        // No later than the take: the launch, then the start of each look that did not see it yet (that look's
        // snapshot came before the take). Measured from there, the wait is at least the real one, so a loaded
        // machine that is slow to see the take cannot make a right wait look short; a 1 s wait still fails.
        var takenAfter = fixture.sim.secondsSinceStart
        let (second, secondErrors) = try Binary.launch(
            fixture, arguments: Self.worker("second", extra: ["--rate-limit", "5"]), logLevel: "info", pollTimeout: "15s")
        let taken = try await Self.eventually {
            let lookedAt = fixture.sim.secondsSinceStart
            let holder: String? = try await fixture.db.query(
                "SELECT worker_id FROM postman_retry.campaign_leases")[0].optional("worker_id")
            if holder == "second" { return true }
            takenAfter = lookedAt
            return false
        }
        #expect(taken, "the second worker takes the expired lease")
        let secondExit = await Binary.wait(second, secondErrors)
        #expect(secondExit.status == 0, "\(secondExit.stderr.suffix(2000))")
        #expect(secondExit.stderr.contains("took over an expired lease"))
        let ledger = await fixture.sim.ledger()
        // (After the take, not the kill: a request of the killed worker may be stamped after `killedAt`.)
        let firstAfterTake = ledger.requests.first { $0.t > max(killedAt, takenAfter) }.map { $0.t - takenAfter }
        // The binary's default request_timeout (5 s) is the longest a request of the old holder can take.
        let wait = 1 + Double(RunSettings().longestSendDelay.components.seconds)
        #expect(
            (firstAfterTake ?? 0) >= wait - 0.2,
            "first request \(firstAfterTake ?? -1) s after the take; the old holder's requests may go out until \(wait - 1) s")
        let summary = try await Reliability.checkConverged(fixture)
        #expect(ledger.acceptedRetries.values.allSatisfy { $0 == 1 }, "one accepted retry per message")
        #expect(summary.counts.retried == ledger.acceptedRetries.count)
        await fixture.stop()
    }

    @Test func aWorkerWithNothingToDoCompletesTheRunAtOnce() async throws {
        let fixture = try await EngineFixture.make(campaigns: 2, messages: 5, mixed: false, seed: 63)
        let (process, errors) = try Binary.launch(
            fixture, arguments: Self.worker("idle", extra: ["--campaign", "no-such-campaign"]), pollTimeout: "10s")
        let exit = await Binary.wait(process, errors)
        #expect(exit.status == 0, "\(exit.stderr)")
        #expect(await fixture.sim.ledger().requests.isEmpty)
        let statuses: [String] = try await fixture.db.query("SELECT status FROM postman_retry.runs").map {
            try $0.decode("status")
        }
        #expect(statuses == ["completed"])
        await fixture.stop()
    }

    @Test func leaseOptionsWithoutWorkerAreRefused() async throws {
        let fixture = try await EngineFixture.make(campaigns: 1, messages: 2, mixed: false, seed: 64)
        let exit = try await Binary.runBinaryWith(fixture, arguments: ["--lease-ttl", "5s"])
        #expect(exit.status == 64, "\(exit.stderr)")
        #expect(exit.stderr.contains("--worker"))
        #expect(await fixture.sim.ledger().requests.isEmpty)
        await fixture.stop()
    }
}
