import EngineTestSupport
import Foundation
import LibPQ
import PostgresTestSupport
import PostmanSimulator
import RetryJob
import RetryJournal
import RetrySettings
import Testing

/// CONTRACT.md section 7: "When the connection that holds the run's exclusivity is lost, the run sends
/// nothing more within one second." A connection that fails says so and stops sending at once (the
/// NetworkEdge and Reliability suites kill it); one whose packets are dropped silently only hangs. The
/// job cannot tell that hang from a renewal held back by a row lock, which is how this test makes it.
@Suite(.serialized) struct HoldGuardTests {
    @Test func aHeartbeatThatHangsStopsSendingWithinASecondAndSendingResumesWhenItAnswers() async throws {
        // Stale rows and unknown ids beside the plain failures: reads, pages and retries all count.
        let fixture = try await EngineFixture.make(
            databasePrefix: "holdguard", campaigns: 4, messages: 80, mixed: true, seed: 95, staleShare: 0.3)
        let run = Task { try await fixture.run(fixture.settings()) }
        // Sending in full swing: the four campaigns' first second of requests.
        let started = try await WorkerTests.eventually(timeout: .seconds(30)) {
            await fixture.sim.ledger().requests.count >= 30
        }
        #expect(started)
        let locker = try await PGConnection.connect(PGConfiguration(url: fixture.url), logger: EngineFixture.quietLogger)
        // NO KEY UPDATE holds the renewal (an UPDATE of the row) back, not the journal's fence (KEY SHARE).
        try await locker.executeScript("BEGIN; SELECT 1 FROM postman_retry.run_holders FOR NO KEY UPDATE")
        // Taken no later than this (the ledger's clock), so the contract's second ends no later than + 1.
        let lockedBy = fixture.sim.secondsSinceStart
        try await Task.sleep(for: .seconds(3))
        let releasedAfter = fixture.sim.secondsSinceStart
        try await locker.executeScript("COMMIT")
        let result = try await run.value
        await locker.close()
        let ledger = await fixture.sim.ledger()
        await fixture.stop()

        let sentLate = ledger.requests.filter { $0.t > lockedBy + 1 && $0.t < releasedAfter }
        let lastBefore = ledger.requests.last { $0.t <= releasedAfter }.map { $0.t - lockedBy }
        #expect(
            sentLate.count == 0,
            "\(sentLate.count) requests more than 1 s after the hold's renewal hung (the last \(lastBefore ?? 0) s after)")
        #expect(ledger.requests.contains { $0.t > releasedAfter }, "sending resumes once a renewal gets through")
        #expect(result.exitStatus == .completed, "\(result.message ?? "")")
        #expect(ledger.acceptedRetries.values.allSatisfy { $0 == 1 }, "one accepted retry per message")
        #expect(result.summary.counts.retried == ledger.acceptedRetries.count, "\(result.summary.counts)")
        #expect(ledger.rateLimited == 0)
    }
}
