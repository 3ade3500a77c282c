import Foundation
import Logging
import RetryJob
import RetryJournal
import RetryMetrics
import Testing

/// The exposition text and the file and push mechanics, without a database.
@Suite struct RunMetricsTests {
    /// A summary whose every count differs, so a count reported under the wrong label shows.
    static let summaryJSON = """
        {"run_id": "42", "started_at": "2026-11-30T12:30:00Z", "finished_at": "2026-11-30T12:41:07Z",
         "status": "completed", "write_conflicts": 0, "deferred_by_quiet_hours": 23,
         "counts": {"selected": 40, "retried": 30, "succeeded": 21, "failed": 7, "pending": 2, "exhausted": 3,
                    "not_found": 1, "reconciled": 4, "batch_not_retryable": 5, "rejected": 6, "conflict": 8,
                    "carried_over": 9, "skipped": 15,
                    "skipped_by_reason": {"otp": 1, "retry_limit": 2, "permanent_error": 3, "unknown_error_code": 4,
                                          "malformed": 5}},
         "api_calls": {"retry": 33, "poll": 17, "rate_limited": 11},
         "campaigns": [{"campaign_id": "c-1", "selected": 25, "retried": 20, "succeeded": 14, "failed": 5},
                       {"campaign_id": "c 2", "selected": 15, "retried": 10, "succeeded": 7, "failed": 2}]}
        """

    @Test func theTextParsesWithThePrometheusClientAndCarriesEveryCount() async throws {
        let summary = try JSONDecoder().decode(RunSummary.self, from: Data(Self.summaryJSON.utf8))
        let metrics = RunMetrics(
            exitStatus: 0, duration: .milliseconds(1500), summary: summary,
            lastSuccess: Date(timeIntervalSince1970: 1_796_042_467.25))
        let samples = try await PrometheusText.parse(metrics.exposition())

        #expect(samples.value(RunMetrics.Name.exitStatus) == 0)
        #expect(samples.value(RunMetrics.Name.duration) == 1.5)
        #expect(samples.value(RunMetrics.Name.lastSuccess) == 1_796_042_467.25)
        #expect(samples.value(RunMetrics.Name.runId) == 42)
        for (outcome, count) in summary.counts.byOutcome {
            #expect(samples.value(RunMetrics.Name.messages, ["outcome": outcome]) == Double(count), "\(outcome)")
        }
        #expect(samples.named(RunMetrics.Name.messages).count == 13)
        for (reason, count) in summary.counts.skippedByReason {
            #expect(samples.value(RunMetrics.Name.skipped, ["reason": reason]) == Double(count), "\(reason)")
        }
        #expect(samples.value(RunMetrics.Name.deferred) == 23)
        #expect(samples.value(RunMetrics.Name.apiCalls, ["kind": "retry"]) == 33)
        #expect(samples.value(RunMetrics.Name.apiCalls, ["kind": "poll"]) == 17)
        #expect(samples.value(RunMetrics.Name.rateLimited) == 11)
        #expect(samples.value(RunMetrics.Name.campaignMessages, ["campaign": "c 2", "outcome": "succeeded"]) == 7)
        #expect(samples.value(RunMetrics.Name.campaignMessages, ["campaign": "c-1", "outcome": "failed"]) == 5)
        // Every family is a gauge (the latest run's values) and says what it is.
        #expect(samples.allSatisfy { $0.type == "gauge" && !$0.help.isEmpty }, "\(samples.filter { $0.help.isEmpty })")
    }

    @Test func aRunThatNeverOpenedReportsOnlyHowItEnded() async throws {
        let metrics = RunMetrics(exitStatus: 75, duration: .milliseconds(20), summary: nil, lastSuccess: nil)
        let samples = try await PrometheusText.parse(metrics.exposition())
        #expect(Set(samples.map(\.name)) == [RunMetrics.Name.exitStatus, RunMetrics.Name.duration])
        #expect(samples.value(RunMetrics.Name.exitStatus) == 75)
    }

    @Test func theFileIsReplacedAtomicallyAndReadableByNodeExporter() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("postman_retry.prom").path

        try MetricsPublisher.writeAtomically("old 1\n", to: path)
        // A umask as tight as the systemd unit's must not hide the file from node_exporter.
        let previous = umask(0o077)
        defer { umask(previous) }
        try MetricsPublisher.writeAtomically("new 2\n", to: path)
        umask(previous)

        #expect(try String(contentsOfFile: path, encoding: .utf8) == "new 2\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["postman_retry.prom"])
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o644)

        let missing = directory.appendingPathComponent("no-such-dir/postman_retry.prom").path
        #expect(throws: MetricsPublisher.Failure.self) { try MetricsPublisher.writeAtomically("x 1\n", to: missing) }
    }

    @Test func anUnreachablePushgatewayIsLoggedAndDoesNotHoldTheRunUp() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("postman_retry.prom").path
        let port = try Pushgateway.freePort()  // nothing listens there
        var logger = Logger(label: "test.metrics")
        logger.logLevel = .critical
        let publisher = MetricsPublisher(
            file: path, pushgateway: URL(string: "http://127.0.0.1:\(port)"), pushTimeout: .seconds(2), logger: logger)

        let started = ContinuousClock.now
        await publisher.publish(RunMetrics(exitStatus: 69, duration: .seconds(1), summary: nil, lastSuccess: nil))
        // Bounded by the 2 s push timeout, not by the OS's connect timeout (minutes); the slack is for a busy
        // CI machine (4.5 s was seen with three builds beside the suite).
        #expect(ContinuousClock.now - started < .seconds(8))
        // The file is written all the same.
        let samples = try await PrometheusText.parse(try String(contentsOfFile: path, encoding: .utf8))
        #expect(samples.value(RunMetrics.Name.exitStatus) == 69)
    }

    @Test func thePushURLNamesTheJobUnderAnyBase() throws {
        #expect(
            MetricsPublisher.pushURL(try #require(URL(string: "http://gw:9091"))) == "http://gw:9091/metrics/job/postman_retry")
        #expect(
            MetricsPublisher.pushURL(try #require(URL(string: "https://mon.example/pgw/")))
                == "https://mon.example/pgw/metrics/job/postman_retry")
        let grouped = "http://gw:9091/metrics/job/postman_retry/agency/moh"
        #expect(MetricsPublisher.pushURL(try #require(URL(string: grouped))) == grouped)
    }
}
