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
        let closed = try NetworkLab.freePort()
        try await expectUnreachableThenResume(
            fixture, apiURL: "http://127.0.0.1:\(closed)/api/v2", problem: ["connection refused"])
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
}
