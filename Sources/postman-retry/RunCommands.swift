import ArgumentParser
import Dispatch
import Synchronization
import Foundation
import LibPQ
import Logging
import RetryCore
import RetryJob

/// Scope and pacing options shared by `plan` and `run` (CONTRACT.md section 5).
struct ScopeOptions: ParsableArguments {
    @Option(name: .customLong("campaign"), help: "Only this campaign (repeatable; all when none).")
    var campaigns: [String] = []

    @Option(help: "Only rows created at or after this time (ISO 8601, or YYYY-MM-DD as Singapore midnight).")
    var since: String?

    @Option(help: "Only rows created before this time (ISO 8601, or YYYY-MM-DD as Singapore midnight).")
    var until: String?

    @Option(help: "Only rows younger than this (e.g. 72h, 30m, 2d).")
    var maxAge: String = "72h"

    @Option(help: "Retry at most this many messages (oldest first).")
    var limit: Int?

    @Option(help: "Requests per second per campaign, every endpoint together.")
    var rateLimit: Int = 10

    @Option(name: .customLong("campaign-rate"), help: "Rate limit of one campaign: ID=TPS (repeatable).")
    var campaignRates: [String] = []

    @Option(help: "How long to poll a retried message for its outcome (e.g. 30m).")
    var pollTimeout: String = "30m"

    @Option(help: "Postman API base URL (else POSTMAN_API_URL).")
    var apiURL: String?

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    func settings(environment: [String: String]) throws -> RunSettings {
        guard let maxAge = parseDuration(self.maxAge) else {
            throw JobError(.usage, "--max-age: '\(self.maxAge)' is not a duration (try 72h, 30m, 2d)")
        }
        guard let poll = parseDuration(pollTimeout), poll > .zero else {
            throw JobError(.usage, "--poll-timeout: '\(pollTimeout)' is not a positive duration (try 30m)")
        }
        guard rateLimit > 0 else { throw JobError(.usage, "--rate-limit must be at least 1, not \(rateLimit)") }
        if let limit, limit < 0 { throw JobError(.usage, "--limit must not be negative, not \(limit)") }
        var rates: [String: Int] = [:]
        for spec in campaignRates {
            let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, let tps = Int(parts[1]), tps > 0 else {
                throw JobError(.usage, "--campaign-rate: '\(spec)' is not ID=TPS with TPS at least 1")
            }
            rates[parts[0]] = tps
        }
        let scope = RunScope(
            campaigns: campaigns, since: try since.map { try parseTime($0, option: "--since") },
            until: try until.map { try parseTime($0, option: "--until") }, maxAgeSeconds: maxAge.seconds, limit: limit)
        return RunSettings(
            scope: scope, apiURL: apiURL ?? environment["POSTMAN_API_URL"] ?? "https://postman.gov.sg/api/v2",
            apiKeys: APIKeys(environment: environment), defaultRateLimit: rateLimit, campaignRateLimits: rates,
            pollTimeout: poll)
    }

    private func parseTime(_ text: String, option: String) throws -> Date {
        if text.count == 10, let date = PGTimestamp.parse(text + "T00:00:00+08:00") { return date }
        if let date = PGTimestamp.parse(text) { return date }
        throw JobError(.usage, "\(option): '\(text)' is not a date (YYYY-MM-DD) or an ISO 8601 time with an offset")
    }
}

enum OutputFormat: String, ExpressibleByArgument, Sendable {
    case text, json
}

func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

struct Plan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Dry run: what `run` would retry, by campaign and skip reason, and the minimum wall time.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var scope: ScopeOptions

    func run() async throws {
        let logger = global.makeLogger()
        try await runReportingExit {
            let settings = try scope.settings(environment: ProcessInfo.processInfo.environment)
            let db = try await connect(global, logger: logger)
            let plan = try await RetryJob.Plan.compute(db: db, settings: settings)
            await db.close()
            if scope.format == .json { try printJSON(plan) } else { print(plan.text) }
        }
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Retry the selected messages, poll their outcomes and write them back; resumes an unfinished run.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var scope: ScopeOptions

    @Option(help: "Where to write this run's report (default: reports/run-<id>; see docs/reports.md).")
    var reportDir: String?

    func run() async throws {
        let logger = global.makeLogger()
        let stop = SignalFlag()
        try await runReportingExit {
            let environment = ProcessInfo.processInfo.environment
            let settings = try scope.settings(environment: environment)
            let db = try await connect(global, logger: logger)
            let live = isatty(STDERR_FILENO) == 1 && global.logFormat != .json
            let result = try await RetryRun(settings: settings, logger: logger, environment: environment, liveProgress: live)
                .run(db: db, stopRequested: { stop.isSet })
            let report = await writeRunReport(db: db, runId: result.runId, directory: reportDir)
            await db.close()
            if scope.format == .json {
                try printJSON(result.summary)
            } else {
                let c = result.summary.counts
                print(
                    "run \(result.runId) \(result.status): \(c.selected) selected, \(c.retried) retried "
                        + "(\(c.succeeded) succeeded, \(c.failed) failed, \(c.pending) pending), \(c.exhausted) exhausted, "
                        + "\(c.reconciled) reconciled, \(c.notFound) not found, \(c.batchNotRetryable) batch not retryable, "
                        + "\(c.rejected) rejected, \(c.conflict) conflicts, \(c.carriedOver) carried over, \(c.skipped) skipped; "
                        + "API calls: \(result.summary.apiCalls.retry) retry, \(result.summary.apiCalls.poll) read, "
                        + "\(result.summary.apiCalls.rateLimited) rate-limited")
            }
            report.announce(json: scope.format == .json)
            if let message = result.message {
                FileHandle.standardError.write(Data("postman-retry: \(message)\n".utf8))
            }
            if result.exitStatus != .completed { throw ExitCode(result.exitStatus.rawValue) }
        }
    }
}

/// Set by SIGINT/SIGTERM; the run stops sending and exits 75 once what it knows is recorded.
final class SignalFlag: Sendable {
    // Kept alive for the life of the process; only touched in init.
    nonisolated(unsafe) private let sources: [any DispatchSourceSignal]
    private let flag = Atomic<Bool>(false)

    init() {
        var sources: [any DispatchSourceSignal] = []
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            sources.append(DispatchSource.makeSignalSource(signal: signalNumber, queue: .global()))
        }
        self.sources = sources
        for source in sources {
            source.setEventHandler { [flag = self] in flag.flag.store(true, ordering: .relaxed) }
            source.resume()
        }
    }

    var isSet: Bool { flag.load(ordering: .relaxed) }
}
