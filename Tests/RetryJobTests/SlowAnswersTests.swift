import EngineTestSupport
import Foundation
import PostmanSimulator
import RetryJob
import RetryJournal
import RetrySettings
import SampleData
import Testing

/// A Postman (or a gateway) that holds some answers back past the job's request timeout while it answers
/// the rest at once: the slow requests cost their own slots of the rate window and a short backoff, not
/// the campaign's whole budget.
@Suite struct SlowAnswersTests {
    /// 30% of answers held 6 s, the job's request timeout 2 s. Two things used to stall the campaign: the
    /// pacer took the slot `limit` requests back in send order, so one unanswered request stopped all
    /// sending until it timed out; and the timeouts of requests sent together, noticed together after later
    /// requests had been answered, counted as failures in a row, so the backoff grew to its 20 s cap.
    @Test func slowAnswersDoNotStallTheCampaign() async throws {
        var options = SimulatorOptions()
        options.seed = 99
        options.timeScale = 10
        options.faults.slowResponse = 0.3
        options.faults.slowResponseSeconds = 6
        let world = try await EngineWorld.make(
            databasePrefix: "slowanswers", campaigns: 1, messages: 100, mixed: false, seed: 99, options: options
        ) { data in
            // No batches: one retry call a message, a hundred calls.
            for i in data.rows.indices { data.rows[i].batchId = nil }
            for i in data.simulator.messages.indices { data.simulator.messages[i].batchId = nil }
        }
        var settings = world.settings(pollTimeout: .seconds(40))
        settings.requestTimeout = .seconds(2)
        let result = try await BatchLookTests.runBounded(world, settings, limit: .seconds(120))
        let ledger = await world.sim.ledger()
        await world.stop()
        #expect(result.exitStatus == .completed, "\(result.message ?? "")")
        #expect(ledger.acceptedRetries.values.allSatisfy { $0 == 1 })
        #expect(result.summary.counts.addsUp, "\(result.summary.counts)")
        // The longest silence while retries were still to go.
        let times = ledger.requests.map(\.t).sorted()
        let lastRetry = ledger.requests.filter { $0.method == "POST" }.map(\.t).max() ?? 0
        let gaps = zip(times, times.dropFirst()).filter { $0.1 <= lastRetry }.map { $0.1 - $0.0 }
        let longest = gaps.max() ?? 0
        let retries = ledger.requests.filter { $0.method == "POST" }.map(\.t)
        let retryPhase = (retries.max() ?? 0) - (retries.min() ?? 0)
        print(
            "slow answers: \(ledger.requests.count) requests, \(retries.count) retry calls in \(retryPhase) s, "
                + "longest silence before the last retry \(longest) s")
        // About 6 requests a second: a slow one holds its slot 3 s (the 2 s timeout and the window), the
        // others 1 s, so 10 / (0.3 * 3 + 0.7) = 6.25. Measured: 16.5 s; 27 s with the slot taken in send
        // order, 32.5 s (and 11.7 s of silence) with the backoff counted in the order failures were noticed.
        #expect(retryPhase < 24, "\(retries.count) retry calls took \(retryPhase) s")
        #expect(longest < 4, "the campaign fell silent for \(longest) s while retries remained")
    }
}
