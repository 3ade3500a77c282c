import EngineTestSupport
import Foundation
import LibPQ
import PostmanSimulator
import RetryConfig
import RetryCore
import RetryJob
import RetryJournal
import RetrySettings
import Synchronization
import Testing

/// Issue 17: `run` streams. A campaign worker reads its selected messages from the journal a chunk at a
/// time; with chunks far smaller than the selection, every row still ends as CONTRACT.md section 4 says,
/// no message is retried twice, a stop and a resume lose nothing, and quiet hours defer the unread rest.
@Suite(.serialized) struct StreamingTests {
    /// Chunks of 6 for 2 × 40 rows with the stale mix: the same outcomes as one chunk, in a fraction of
    /// the memory.
    @Test func smallChunksEndLikeOneChunk() async throws {
        let reference = try await EngineFixture.make(campaigns: 2, messages: 40, seed: 81, staleShare: 0.3)
        let chunked = try await EngineFixture.make(campaigns: 2, messages: 40, seed: 81, staleShare: 0.3)
        let whole = try await reference.run(reference.settings(pollTimeout: .seconds(10)))
        var settings = chunked.settings(pollTimeout: .seconds(10))
        settings.journalChunk = 6
        let streamed = try await chunked.run(settings)
        #expect(streamed.exitStatus == .completed, "\(streamed.message ?? "")")
        let summary = try await Reliability.checkConverged(chunked)
        #expect(summary.counts == whole.summary.counts, "chunked \(summary.counts), whole \(whole.summary.counts)")
        #expect(summary.counts.retried > 10)
        // Six read in, refilled below three open; finished ones leave (members of a batch that may go
        // whole stay until it is decided: at most one chunk of them).
        #expect(streamed.peakLifecyclesPerCampaign <= 6 + 3 + 6, "\(streamed.peakLifecyclesPerCampaign) in memory")
        #expect(whole.peakLifecyclesPerCampaign >= 20, "the reference read each campaign whole")
        await reference.stop()
        await chunked.stop()
    }

    /// A stop in the middle of the stream, then a resume in chunks: the intents and accepted retries of
    /// the first process are read in before any selected message, and nothing goes twice.
    @Test func aStopMidStreamThenAResumeLoseNothing() async throws {
        let fixture = try await EngineFixture.make(campaigns: 1, messages: 50, mixed: false, seed: 82, staleShare: 0.3)
        var settings = fixture.settings(pollTimeout: .seconds(10))
        settings.journalChunk = 5
        settings.wholeBatchRetries = false
        // Stop once Postman has accepted a few retries (not after a fixed time: a loaded machine may not
        // have sent anything yet), so the stop comes mid-stream whatever the machine's speed.
        let stop = Flag()
        let sim = fixture.sim
        let watcher = Task {
            while await sim.ledger().acceptedRetries.count < 5, !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(20))
            }
            stop.value.store(true, ordering: .relaxed)
        }
        let stopped = try await RetryRun(settings: settings, logger: EngineFixture.quietLogger, environment: [:])
            .run(db: fixture.db, stopRequested: { stop.value.load(ordering: .relaxed) })
        watcher.cancel()
        #expect(stopped.status == "interrupted")
        let sentBefore = await fixture.sim.ledger().acceptedRetries.count
        #expect(sentBefore > 0 && sentBefore < 40, "the stop came mid-stream: \(sentBefore) retried")
        let resumed = try await fixture.run(settings)
        #expect(resumed.exitStatus == .completed, "\(resumed.message ?? "")")
        #expect(resumed.runId == stopped.runId, "the stopped run was resumed")
        _ = try await Reliability.checkConverged(fixture)
        await fixture.stop()
    }

    /// Quiet hours begin while most of the campaign is still only in the journal: the unread rest is
    /// deferred without being read, every message is either retried or deferred, nothing is left open.
    @Test func quietHoursDeferTheUnreadRest() async throws {
        let fixture = try await EngineFixture.make(campaigns: 1, messages: 40, mixed: false, seed: 83)
        let start = try #require(PGTimestamp.parse("2026-12-01T21:59:00+08:00"))
        let clock = AgencyConfigTests.SteppingClock(start: start, step: 5)
        var settings = fixture.settings()
        settings.quietHours = try ConfigFile.parse("[quiet_hours]\nstart = \"22:00\"\nend = \"07:00\"\n").quietHours
        settings.wallClock = { clock.now() }
        settings.wholeBatchRetries = false
        settings.journalChunk = 8
        let result = try await fixture.run(settings)
        #expect(result.exitStatus == .completed, "\(result.message ?? "")")
        let retried = result.summary.counts.retried
        #expect(retried > 0 && retried < 20, "\(result.summary.counts)")
        #expect(result.summary.deferredByQuietHours == 40 - retried, "every message is either retried or deferred")
        #expect(await fixture.sim.ledger().acceptedRetries.count == retried, "nothing was sent after quiet hours began")
        let open: Int = try await fixture.db.query("SELECT count(*) AS n FROM postman_retry.journal WHERE state <> 'done'")[0]
            .decode("n")
        #expect(open == 0)
        #expect(result.peakLifecyclesPerCampaign <= 8 + 4 + 8)
        await fixture.stop()
    }

    private final class Flag: Sendable { let value = Atomic<Bool>(false) }
}
