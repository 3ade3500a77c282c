import ArgumentParser
import CProcessHardening
import Foundation
import LibPQ
import Logging
import PostmanAPI
import RetryConfig
import RetryJob
import RetryJournal
import RetrySettings

@main
struct PostmanRetryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "postman-retry",
        abstract: "Retries failed Postman v2 SMS safely: rate-limited, resumable, never twice.",
        discussion: """
            Exit codes: 0 completed, 64 bad usage or config (also a database that refuses the job's login \
            or does not exist), 69 Postman unreachable (at once when its TLS certificate is not trusted), \
            75 temporary (database down, another run holds the lock, interrupted), 77 API key or IP refused, \
            1 other. Proxy and CA settings: docs/network.md.
            """,
        version: "0.1.0",
        subcommands: [Migrate.self, Plan.self, Run.self, Report.self, Runs.self, Config.self]
    )

    /// Before anything else, and for every subcommand: the process holds API keys (in its environment
    /// and memory), so it is made non-dumpable (issue 8, "Secrets"). A crash writes no core file with
    /// the keys in it, and no other process of the same user can ptrace it or read its memory or
    /// `/proc/<pid>/environ`. Failing to do so is not a reason to refuse to run: say so and go on.
    static func main() async {
        // Swift concurrency's jobs on NIO's event loops (issue 17; the environment variables are there).
        ProcessEventLoops.configure(environment: ProcessInfo.processInfo.environment)
        if cprocess_make_nondumpable() != 0 {
            FileHandle.standardError.write(
                Data("postman-retry: warning: could not mark the process non-dumpable (errno \(errno))\n".utf8))
        }
        await main(nil)
    }
}

/// Options every command shares.
struct GlobalOptions: ParsableArguments {
    @Option(help: "PostgreSQL URL or conninfo (else DATABASE_URL, else libpq's PG* variables).")
    var databaseURL: String?

    @Option(help: "Config file (TOML; else POSTMAN_RETRY_CONFIG). See postman-retry.example.toml.")
    var config: String?

    var commandLineValues: CommandLineValues {
        var values = CommandLineValues()
        values.configPath = config
        values.databaseURL = databaseURL
        return values
    }

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    var database: PGConfiguration {
        PGConfiguration(url: databaseURL ?? ProcessInfo.processInfo.environment["DATABASE_URL"])
    }

    @Option(help: "Log format on stderr: text, or json (one object per line). Default: text on a terminal, json otherwise.")
    var logFormat: LogFormat?

    enum LogFormat: String, ExpressibleByArgument { case text, json }

    func makeLogger() -> Logger {
        let level = logLevel
        let json = (logFormat ?? (isatty(STDERR_FILENO) == 1 ? .text : .json)) == .json
        LoggingSystem.bootstrap { label in
            if json { return JSONLogHandler(label: label, level: level) }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "postman-retry")
        logger.logLevel = logLevel
        return logger
    }
}

// Log levels are flag values; neither swift-log nor swift-argument-parser declares it.
// swift-format-ignore: AvoidRetroactiveConformances
extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Runs a command body and turns failures into the contract's exit codes with a one-line message.
func runReportingExit(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ExitCode {
        throw error
    } catch {
        let failure = JobError.classify(error)
        FileHandle.standardError.write(Data("postman-retry: \(failure.message)\n".utf8))
        throw ExitCode(failure.status.rawValue)
    }
}

func connect(
    _ global: GlobalOptions, logger: Logger, configure: (inout PGConfiguration) -> Void = { _ in }
) async throws -> PGConnection {
    var configuration = global.database
    configure(&configuration)
    // Refused credentials or a missing database: 64; the server down or unreachable: 75.
    return try await JobDatabase.connect(configuration, logger: logger)
}

/// Opens a connection for `body` and closes it when `body` ends, also when it throws.
func withConnection<T: Sendable>(
    _ global: GlobalOptions, logger: Logger, configure: (inout PGConfiguration) -> Void = { _ in },
    _ body: (PGConnection) async throws -> T
) async throws -> T {
    let db = try await connect(global, logger: logger, configure: configure)
    do {
        let value = try await body(db)
        await db.close()
        return value
    } catch {
        await db.close()
        throw error
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create or upgrade the job's own schema (postman_retry); never touches the agency table.")

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let logger = global.makeLogger()
        try await runReportingExit {
            let report = try await withConnection(global, logger: logger) { db in try await Migrator().migrate(db) }
            for name in report.applied { print("applied \(name)") }
            if report.applied.isEmpty { print("schema postman_retry is up to date (\(report.alreadyApplied.count) migrations)") }
        }
    }
}
