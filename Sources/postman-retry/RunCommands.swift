import ArgumentParser
import Dispatch
import Foundation
import LibPQ
import Logging
import RetryConfig
import RetryCore
import RetryJob
import RetryJournal
import RetryReport
import RetrySettings
import Synchronization

/// Scope and pacing options shared by `plan` and `run` (CONTRACT.md section 5). Options without a
/// value given fall back to the environment, then the config file, then the default.
struct ScopeOptions: ParsableArguments {
    @Option(name: .customLong("campaign"), help: "Only this campaign (repeatable; all when none).")
    var campaigns: [String] = []

    @Option(help: "Only rows created at or after this time (ISO 8601, or YYYY-MM-DD as Singapore midnight).")
    var since: String?

    @Option(help: "Only rows created before this time (ISO 8601, or YYYY-MM-DD as Singapore midnight).")
    var until: String?

    @Option(
        help:
            "Only rows younger than this (e.g. 72h, 30m, 2d). Default: \(SettingsResolver.formatDuration(SettingDefaults.maxAge))."
    )
    var maxAge: String?

    @Option(help: "Retry at most this many messages (oldest first).")
    var limit: Int?

    @Option(help: "Requests per second per campaign, every endpoint together. Default: \(SettingDefaults.rateLimit).")
    var rateLimit: Int?

    @Option(name: .customLong("campaign-rate"), help: "Rate limit of one campaign: ID=TPS (repeatable).")
    var campaignRates: [String] = []

    @Option(
        help:
            "How long to poll a retried message for its outcome (e.g. 30m). Default: \(SettingsResolver.formatDuration(SettingDefaults.pollTimeout))."
    )
    var pollTimeout: String?

    @Option(help: "Postman API base URL (else POSTMAN_API_URL, else the config file).")
    var apiURL: String?

    @Option(
        help:
            "Extra CA certificates (PEM) to trust for Postman's TLS certificate, on top of the system's (else SSL_CERT_FILE, else the config file)."
    )
    var caFile: String?

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    @Flag(name: .customLong("no-whole-batch"), help: "Retry every batch member by its own call, never a batch in one call.")
    var noWholeBatch = false

    func values(_ global: GlobalOptions) -> CommandLineValues {
        var values = global.commandLineValues
        values.campaigns = campaigns
        values.since = since
        values.until = until
        values.maxAge = maxAge
        values.limit = limit
        values.rateLimit = rateLimit
        values.campaignRates = campaignRates
        values.pollTimeout = pollTimeout
        values.apiURL = apiURL
        values.caFile = caFile
        if noWholeBatch { values.wholeBatch = false }
        return values
    }

    func settings(_ global: GlobalOptions, environment: [String: String]) throws -> RunSettings {
        try SettingsResolver.resolve(values(global), environment: environment).run
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
            let settings = try scope.settings(global, environment: ProcessInfo.processInfo.environment)
            let db = try await connect(global, logger: logger)
            for slow in try await TableCheck.requireFit(settings.table, db: db, writes: false) { logger.warning("\(slow)") }
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
    @OptionGroup var metrics: MetricsOptions

    @Option(help: "Where to write this run's report (default: reports/run-<id>; see docs/reports.md).")
    var reportDir: String?

    @Flag(help: "Share one run with other `run --worker` processes, on this or other machines (docs/operations.md).")
    var worker = false

    @Option(help: "With --worker: this worker's name in the lease table (default: host:pid).")
    var workerId: String?

    @Option(help: "With --worker: a campaign lease not renewed for this long passes to another worker (default: 15s).")
    var leaseTtl: String?

    @Option(help: "With --worker: work at most this many campaigns at once (default: as many as are free).")
    var maxCampaigns: Int?

    func validate() throws {
        if !worker, workerId != nil || leaseTtl != nil || maxCampaigns != nil {
            throw ValidationError("--worker-id, --lease-ttl and --max-campaigns need --worker")
        }
        if let leaseTtl {
            guard let ttl = parseDuration(leaseTtl), ttl >= .seconds(3) else {
                throw ValidationError("--lease-ttl: '\(leaseTtl)' is not a duration of at least 3s (e.g. 15s, 1m)")
            }
        }
        if let maxCampaigns, maxCampaigns < 1 { throw ValidationError("--max-campaigns must be at least 1") }
    }

    func run() async throws {
        let logger = global.makeLogger()
        let command = self
        try await withGracefulShutdown(logger: logger) { stop in
            try await runReportingExit {
                let environment = ProcessInfo.processInfo.environment
                let resolved = try SettingsResolver.resolve(command.scope.values(command.global), environment: environment)
                let settings = resolved.run
                try await withConnection(command.global, logger: logger) { db in
                    try await command.run(
                        settings: settings, cost: CostModel(resolved.cost), db: db, stop: stop, environment: environment,
                        logger: logger)
                }
            }
        }
    }

    private func run(
        settings: RunSettings, cost: CostModel, db: PGConnection, stop: StopFlag, environment: [String: String], logger: Logger
    ) async throws {
        for slow in try await TableCheck.requireFit(settings.table, db: db, writes: true) { logger.warning("\(slow)") }
        let live = isatty(STDERR_FILENO) == 1 && global.logFormat != .json
        let job = RetryRun(settings: settings, logger: logger, environment: environment, liveProgress: live)
        let result = try await metrics.recording(db: db, logger: logger) {
            // The run's hold and the workers' leases are renewed on a connection of their own, so a
            // slow journal statement never delays a heartbeat. Heartbeats must fail fast rather than
            // hang: a process that cannot renew stops sending within a second (docs/operations.md).
            try await withConnection(
                global, logger: logger,
                configure: { configuration in
                    configuration.applicationName = "postman-retry heartbeat"
                    // SET LOCAL, not a session setting: through a transaction pool a session timeout would
                    // land on a shared server connection and cut other clients' statements (the journal's too).
                    configuration.transactionSettings["statement_timeout"] = "5000"
                    configuration.networkTimeoutMilliseconds = 5_000
                }
            ) { leaseDB in
                guard worker else { return try await job.run(db: db, holdDB: leaseDB, stopRequested: { stop.isSet }) }
                let workerSettings = WorkerSettings(
                    workerId: workerId, leaseTTL: leaseTtl.flatMap(parseDuration) ?? .seconds(15),
                    maxCampaigns: maxCampaigns)
                return try await RetryWorker(job: job, worker: workerSettings)
                    .run(db: db, leaseDB: leaseDB, stopRequested: { stop.isSet })
            }
        }
        let report = await writeRunReport(db: db, runId: result.runId, directory: reportDir, cost: cost)
        if scope.format == .json {
            try printJSON(result.summary)
        } else {
            print(RunSummaryText.line(runId: result.runId, status: result.status, summary: result.summary))
        }
        report.announce(json: scope.format == .json)
        if let message = result.message {
            FileHandle.standardError.write(Data("postman-retry: \(message)\n".utf8))
        }
        if result.exitStatus != .completed { throw ExitCode(result.exitStatus.rawValue) }
    }
}
