import CoreMetrics
import Foundation
import Prometheus
import RetryCore
import RetryJournal

/// What one `postman-retry run` invocation reports to Prometheus: how it ended, how long it took, and the
/// run's counts as the journal has them (``RunSummary``).
///
/// Every value is a gauge that describes the latest invocation: the textfile collector and the Pushgateway
/// both replace the whole set each time, so counters that grow across runs would only mislead.
public struct RunMetrics: Sendable {
    /// The process exit status (CONTRACT.md section 5: 0, 1, 64, 69, 75, 77).
    public var exitStatus: Int32
    /// Wall time of the run, from before the lock was taken to the summary.
    public var duration: Duration
    /// The run's counts; nil when it ended before it had a run in the journal (lock held, schema missing).
    public var summary: RunSummary?
    /// When the latest completed run finished, from the journal. Only a completed run moves it, and it is
    /// carried over by runs that did not complete, so "too long since the last success" stays alertable.
    public var lastSuccess: Date?

    public init(exitStatus: Int32, duration: Duration, summary: RunSummary?, lastSuccess: Date?) {
        self.exitStatus = exitStatus
        self.duration = duration
        self.summary = summary
        self.lastSuccess = lastSuccess
    }

    /// Metric names, shared with the docs (docs/operations.md) and the tests.
    public enum Name {
        public static let exitStatus = "postman_retry_run_exit_status"
        public static let duration = "postman_retry_run_duration_seconds"
        public static let runId = "postman_retry_run_id"
        public static let messages = "postman_retry_run_messages"
        public static let skipped = "postman_retry_run_skipped_messages"
        public static let deferred = "postman_retry_run_deferred_by_quiet_hours_messages"
        public static let apiCalls = "postman_retry_run_api_calls"
        public static let rateLimited = "postman_retry_run_rate_limited_calls"
        public static let campaignMessages = "postman_retry_run_campaign_messages"
        public static let lastSuccess = "postman_retry_last_success_timestamp_seconds"
    }

    static let help: [String: String] = [
        Name.exitStatus:
            "Exit status of the latest run (0 completed, 64 usage, 69 Postman unreachable, 75 temporary or interrupted, 77 key refused, 1 other).",
        Name.duration: "Wall time of the latest run in seconds.",
        Name.runId: "Journal id of the latest run (postman-retry report --run ID).",
        Name.messages: "Messages of the latest run by outcome, as in summary.json counts.",
        Name.skipped: "Failed messages the latest run skipped, by reason.",
        Name.deferred: "Selected messages the latest run left for the next run because quiet hours began.",
        Name.apiCalls: "HTTP requests the latest run sent to Postman, by kind (every attempt, 429s included).",
        Name.rateLimited: "Requests of the latest run that Postman answered 429.",
        Name.campaignMessages: "Messages of the latest run by campaign and outcome.",
        Name.lastSuccess: "Unix time at which the latest completed run finished."
    ]

    /// The metrics in Prometheus text exposition format (version 0.0.4), via swift-metrics and
    /// swift-prometheus on a registry of their own, so nothing else in the process ends up in it.
    public func exposition() -> String {
        let registry = PrometheusCollectorRegistry()
        let factory = HelpfulPrometheusFactory(registry: registry, help: Self.help)
        func gauge(_ name: String, _ value: Double, _ dimensions: [(String, String)] = []) {
            Gauge(label: name, dimensions: dimensions, factory: factory).record(value)
        }
        gauge(Name.exitStatus, Double(exitStatus))
        gauge(Name.duration, duration.seconds)
        if let lastSuccess { gauge(Name.lastSuccess, lastSuccess.timeIntervalSince1970) }
        guard let summary else { return registry.emitToString() }

        if let id = Double(summary.runId) { gauge(Name.runId, id) }
        for (outcome, count) in summary.counts.byOutcome { gauge(Name.messages, Double(count), [("outcome", outcome)]) }
        for (reason, count) in summary.counts.skippedByReason.sorted(by: { $0.key < $1.key }) {
            gauge(Name.skipped, Double(count), [("reason", reason)])
        }
        gauge(Name.deferred, Double(summary.deferredByQuietHours))
        gauge(Name.apiCalls, Double(summary.apiCalls.retry), [("kind", "retry")])
        gauge(Name.apiCalls, Double(summary.apiCalls.poll), [("kind", "poll")])
        gauge(Name.rateLimited, Double(summary.apiCalls.rateLimited))
        for campaign in summary.campaigns {
            for count in [SummaryCount.selected, .retried, .succeeded, .failed] {
                gauge(
                    Name.campaignMessages, Double(count.value(in: campaign)),
                    [("campaign", campaign.campaignId), ("outcome", count.name)])
            }
        }
        return registry.emitToString()
    }
}

extension RunSummary.Counts {
    /// Each count under its summary.json name (the `outcome` label's values).
    public var byOutcome: [(String, Int)] {
        SummaryCount.allCases.map { ($0.name, $0.value(in: self)) }
    }
}
