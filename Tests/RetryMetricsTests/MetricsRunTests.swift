import EngineTestSupport
import Foundation
import LibPQ
import PostgresTestSupport
import PostmanSimulator
import RetryJob
import RetryJournal
import RetryMetrics
import Synchronization
import Testing

/// The real binary against real PostgreSQL, the simulator over HTTP and a real Pushgateway: what
/// `--metrics-file` and `--pushgateway` publish must be what the journal says about the run.
@Suite(.serialized) struct MetricsRunTests {
    static func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    /// Our samples of one group as the Pushgateway shows them (it adds its own metrics, and the group's
    /// labels: job, instance, and any from the push URL).
    static func pushed(_ gateway: Pushgateway, group: [String: String] = [:]) async throws -> [Sample] {
        let page = try await gateway.get("/metrics")
        #expect(page.status == 200)
        return try await PrometheusText.parse(page.body).filter {
            $0.name.hasPrefix("postman_retry_") && $0.labels["job"] == MetricsPublisher.job
                && $0.labels["agency"] == group["agency"]
        }
    }

    /// Checks every count against the summary read back from the journal.
    static func expectMatches(_ samples: [Sample], _ summary: RunSummary, _ source: String) {
        for (outcome, count) in summary.counts.byOutcome {
            #expect(samples.value(RunMetrics.Name.messages, ["outcome": outcome]) == Double(count), "\(source): \(outcome)")
        }
        for (reason, count) in summary.counts.skippedByReason {
            #expect(samples.value(RunMetrics.Name.skipped, ["reason": reason]) == Double(count), "\(source): \(reason)")
        }
        #expect(samples.value(RunMetrics.Name.apiCalls, ["kind": "retry"]) == Double(summary.apiCalls.retry), "\(source)")
        #expect(samples.value(RunMetrics.Name.apiCalls, ["kind": "poll"]) == Double(summary.apiCalls.poll), "\(source)")
        #expect(samples.value(RunMetrics.Name.rateLimited) == Double(summary.apiCalls.rateLimited), "\(source)")
        for campaign in summary.campaigns {
            #expect(
                samples.value(RunMetrics.Name.campaignMessages, ["campaign": campaign.campaignId, "outcome": "retried"])
                    == Double(campaign.retried), "\(source): \(campaign.campaignId)")
        }
    }

    @Test func aCompletedRunPublishesTheJournalsCountsThenALockedOutRunOnlyItsExitStatus() async throws {
        let fixture = try await MetricsFixture.make()
        let gateway = try await Pushgateway.start()
        let directory = try Self.temporaryDirectory()
        defer {
            gateway.stop()
            try? FileManager.default.removeItem(at: directory)
        }
        let file = directory.appendingPathComponent("postman_retry.prom").path

        let started = ContinuousClock.now
        let first = try await fixture.run(["--metrics-file", file, "--pushgateway", gateway.baseURL])
        let wall = ContinuousClock.now - started
        #expect(first.status == 0, "\(first.stderr)")

        let text = try String(contentsOfFile: file, encoding: .utf8)
        let samples = try await PrometheusText.parse(text)
        let runId = try #require(samples.value(RunMetrics.Name.runId))
        let summary = try await RunSummary.load(db: fixture.db, runId: Int64(runId))
        #expect(summary.status == "completed" && summary.counts.retried > 0 && summary.counts.skipped > 0)
        Self.expectMatches(samples, summary, "file")
        #expect(samples.value(RunMetrics.Name.exitStatus) == 0)
        let duration = try #require(samples.value(RunMetrics.Name.duration))
        #expect(duration > 0 && duration <= Double(wall.components.seconds) + 1)
        let finished: Double = try await fixture.db.query(
            "SELECT extract(epoch FROM finished_at)::float8 AS t FROM postman_retry.runs WHERE run_id = \(Int64(runId))"
        )[0].decode("t")
        let lastSuccess = try #require(samples.value(RunMetrics.Name.lastSuccess))
        #expect(abs(lastSuccess - finished) < 0.001)
        for key in fixture.apiKeys { #expect(!text.contains(key), "the API key leaked into the metrics") }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["postman_retry.prom"])

        // The Pushgateway got the same values.
        let pushedSamples = try await Self.pushed(gateway)
        Self.expectMatches(pushedSamples, summary, "pushgateway")
        #expect(pushedSamples.value(RunMetrics.Name.lastSuccess) == lastSuccess)
        #expect(pushedSamples.value(RunMetrics.Name.exitStatus) == 0)

        // A second run while another session holds the run lock exits 75 before it has a run: it reports
        // its exit status, keeps the last success, and (PUT) no count of the first run is left behind.
        let holder = try await OtherRunHolder.start(url: fixture.url)
        let second = try await fixture.run(["--metrics-file", file, "--pushgateway", gateway.baseURL])
        await holder.stop()
        #expect(second.status == 75, "\(second.stderr)")
        for locked in [
            try await PrometheusText.parse(try String(contentsOfFile: file, encoding: .utf8)),
            try await Self.pushed(gateway)
        ] {
            #expect(locked.value(RunMetrics.Name.exitStatus) == 75)
            #expect(locked.value(RunMetrics.Name.lastSuccess) == lastSuccess)
            #expect(locked.named(RunMetrics.Name.messages).isEmpty && locked.value(RunMetrics.Name.runId) == nil)
        }
        await fixture.stop()
    }

    @Test func aRefusedKeyStillPublishesExit77AndTheRunsCounts() async throws {
        let fixture = try await MetricsFixture.make(campaigns: 1, messages: 6, seed: 32)
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("postman_retry.prom").path
        let wrongKeys = fixture.keysEnvironment.mapValues { _ in "not-the-key" }

        let exit = try await fixture.run(["--metrics-file", file], keys: wrongKeys)
        #expect(exit.status == 77, "\(exit.stderr)")
        let samples = try await PrometheusText.parse(try String(contentsOfFile: file, encoding: .utf8))
        #expect(samples.value(RunMetrics.Name.exitStatus) == 77)
        // No run has completed in this database, so there is no last success to report.
        #expect(samples.value(RunMetrics.Name.lastSuccess) == nil)
        let runId = try #require(samples.value(RunMetrics.Name.runId))
        let summary = try await RunSummary.load(db: fixture.db, runId: Int64(runId))
        // Stopped at the first read: every selected message is still unsettled, outside the counts' sums.
        #expect(summary.status == "interrupted" && summary.counts.selected == 0 && (summary.counts.unsettled ?? 0) > 0)
        Self.expectMatches(samples, summary, "refused")
        await fixture.stop()
    }

    @Test func aRunStoppedBySIGTERMPublishesExit75WithinItsShutdownTime() async throws {
        let fixture = try await MetricsFixture.make(campaigns: 2, messages: 30, seed: 34)
        let gateway = try await Pushgateway.start()
        let directory = try Self.temporaryDirectory()
        defer {
            gateway.stop()
            try? FileManager.default.removeItem(at: directory)
        }
        let file = directory.appendingPathComponent("postman_retry.prom").path
        // A slow rate keeps the run busy long enough to be stopped in the middle; the group name is ours.
        let group = "\(gateway.baseURL)/metrics/job/postman_retry/agency/test"
        let pid = Mutex<Int32>(0)
        let running = Task {
            try await fixture.run(["--rate-limit", "5", "--metrics-file", file, "--pushgateway", group]) { started in
                pid.withLock { $0 = started }
            }
        }
        // Stopped in the middle: once Postman has accepted a few retries (not after a fixed time, which a
        // busy machine can spend before the first request).
        let deadline = ContinuousClock.now + .seconds(30)
        while await fixture.world.sim.ledger().acceptedRetries.count < 3, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        let signalled = ContinuousClock.now
        #expect(kill(pid.withLock { $0 }, SIGTERM) == 0)
        let exit = try await running.value
        #expect(exit.status == 75, "\(exit.stderr)")
        #expect(ContinuousClock.now - signalled < .seconds(10))

        let samples = try await PrometheusText.parse(try String(contentsOfFile: file, encoding: .utf8))
        #expect(samples.value(RunMetrics.Name.exitStatus) == 75)
        let runId = try #require(samples.value(RunMetrics.Name.runId))
        let summary = try await RunSummary.load(db: fixture.db, runId: Int64(runId))
        #expect(summary.status == "interrupted" && summary.counts.retried > 0 && summary.counts.retried < 60)
        Self.expectMatches(samples, summary, "interrupted")
        let pushed = try await Self.pushed(gateway, group: ["agency": "test"])
        #expect(pushed.value(RunMetrics.Name.exitStatus) == 75)
        Self.expectMatches(pushed, summary, "interrupted, pushed")
        await fixture.stop()
    }

    @Test func badMetricsOptionsFailWith64BeforeTheRunStarts() async throws {
        let fixture = try await MetricsFixture.make(campaigns: 1, messages: 2, seed: 33)
        for arguments in [
            ["--pushgateway", "ftp://gateway:9091"], ["--pushgateway", "gateway:9091"],
            ["--metrics-file", "/no/such/directory/postman_retry.prom"]
        ] {
            let exit = try await fixture.run(arguments)
            #expect(exit.status == 64, "\(arguments): \(exit.stderr)")
        }
        let runs: Int = try await fixture.db.query("SELECT count(*) AS n FROM postman_retry.runs")[0].decode("n")
        #expect(runs == 0)
        #expect(await fixture.sim.ledger().requests.isEmpty)
        await fixture.stop()
    }
}
