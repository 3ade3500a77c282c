import ArgumentParser
import Foundation
import LibPQ
import Logging
import RetryConfig
import RetryJob
import RetryJournal
import RetryReport
import RetrySettings

extension CostModel {
    /// The report's prices from the config file's `[cost]` (defaults: Postman's from 1 July 2025).
    init(_ settings: CostSettings) {
        func decimal(_ value: Double) -> Decimal { Decimal(string: String(value)) ?? Decimal(value) }
        self.init(
            localPerSegment: decimal(settings.localPerSegment), foreignPerSegment: decimal(settings.foreignPerSegment),
            segmentsPerMessage: settings.segmentsPerMessage, gstRate: decimal(settings.gstRate))
    }
}

/// Where a run's report goes when no directory is given: `reports/run-<id>` under the working
/// directory (docs/reports.md). A resumed run writes to the same place, replacing the files.
func defaultReportDirectory(runId: Int64) -> String { "reports/run-\(runId)" }

/// Loads and writes the report of `runId`; returns the path of summary.html.
func writeReport(db: PGConnection, runId: Int64, directory: String?, cost: CostModel = .postmanDefault) async throws -> String {
    let report = try await RunReport.load(db: db, runId: runId, cost: cost)
    let url = URL(fileURLWithPath: directory ?? defaultReportDirectory(runId: runId))
    return try ReportFiles(report).write(to: url).path
}

/// What `run` says about its report once the summary is printed.
struct RunReportOutcome {
    var path: String?
    var error: String?

    /// The path goes to stdout in text mode and to stderr with `--format json`, so stdout stays JSON.
    func announce(json: Bool) {
        if let path {
            if json {
                FileHandle.standardError.write(Data("report: \(path)\n".utf8))
            } else {
                print("report: \(path)")
            }
        }
        if let error {
            FileHandle.standardError.write(
                Data("postman-retry: the run is recorded but its report could not be written: \(error)\n".utf8))
        }
    }
}

/// After `run`: the report of that run. A failure here does not change the run's exit status (the
/// run itself is recorded); it is reported on stderr, and `postman-retry report --run ID` rewrites it.
func writeRunReport(db: PGConnection, runId: Int64, directory: String?, cost: CostModel) async -> RunReportOutcome {
    do {
        return RunReportOutcome(path: try await writeReport(db: db, runId: runId, directory: directory, cost: cost))
    } catch {
        return RunReportOutcome(error: JobError.classify(error).message)
    }
}

struct Report: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a run's report: summary.html, summary.md, summary.json and failures.csv.",
        discussion: "Prints the path of summary.html. See docs/reports.md for what each file shows.")

    @OptionGroup var global: GlobalOptions

    @Option(name: .customLong("run"), help: "The run to report on (default: the latest run).")
    var runId: Int64?

    @Option(help: "Directory to write the files into (default: reports/run-<id>).")
    var output: String?

    func run() async throws {
        let logger = global.makeLogger()
        try await runReportingExit {
            let resolved = try SettingsResolver.resolve(
                global.commandLineValues, environment: ProcessInfo.processInfo.environment)
            let written = try await withConnection(global, logger: logger) { db in
                let missing = try await Migrator().pending(db)
                guard missing.isEmpty else {
                    throw JobError(.usage, "the postman_retry schema is not up to date; run `postman-retry migrate` first")
                }
                var latest: Int64? = nil
                if runId == nil { latest = try await RunReport.latestRunId(db: db) }
                guard let id = runId ?? latest else {
                    throw JobError(.usage, "no run has been recorded yet: nothing to report")
                }
                return try await writeReport(db: db, runId: id, directory: output, cost: CostModel(resolved.cost))
            }
            print(written)
        }
    }
}

struct Runs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List past runs, newest first, with their counts.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    @Option(help: "How many runs to list.")
    var limit: Int = 20

    func validate() throws {
        guard limit > 0 else { throw ValidationError("--limit must be at least 1") }
    }

    func run() async throws {
        let logger = global.makeLogger()
        try await runReportingExit {
            let history = try await withConnection(global, logger: logger) { db in
                let missing = try await Migrator().pending(db)
                guard missing.isEmpty else {
                    throw JobError(.usage, "the postman_retry schema is not up to date; run `postman-retry migrate` first")
                }
                return try await RunHistory.load(db: db, limit: limit)
            }
            if format == .json { try printJSON(history) } else { print(history.text) }
        }
    }
}
