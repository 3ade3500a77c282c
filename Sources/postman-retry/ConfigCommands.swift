import ArgumentParser
import Foundation
import LibPQ
import RetryConfig
import RetryJob
import RetrySettings

struct Config: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the effective settings, or check a config file against the database.",
        subcommands: [ConfigShow.self, ConfigCheck.self])
}

struct ConfigShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Print the effective settings and where each comes from (flag, environment, file, default); keys redacted.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var scope: ScopeOptions

    func run() async throws {
        try await runReportingExit {
            let resolved = try SettingsResolver.resolve(scope.values(global), environment: ProcessInfo.processInfo.environment)
            if scope.format == .json {
                try printJSON(resolved.shown)
                return
            }
            let width = resolved.shown.map(\.name.count).max() ?? 10
            for setting in resolved.shown {
                let name = setting.name.padding(toLength: width, withPad: " ", startingAt: 0)
                print("\(name)  \(setting.value)  [\(setting.source.rawValue)]")
            }
        }
    }
}

struct ConfigCheck: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate the config file, then check its table mapping against the live database.",
        discussion: "Exit 0 when everything fits, 64 listing every problem at once, 75 when the database is unreachable.")

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let logger = global.makeLogger()
        try await runReportingExit {
            let environment = ProcessInfo.processInfo.environment
            // File problems (unknown keys, bad values) come out of resolve as one usage error listing them all.
            let resolved = try SettingsResolver.resolve(global.commandLineValues, environment: environment)
            let source = resolved.config.map { "config file \($0.path)" } ?? "no config file (the reference table)"
            print("\(source): valid")
            let db = try await connect(global, logger: logger)
            let result = try await TableCheck(table: resolved.run.table).run(db)
            await db.close()
            for note in result.notes { print("note: \(note)") }
            if let index = result.suggestedIndex { print("to add it:\n  \(index)") }
            var problems = result.problems
            for (campaign, config) in (resolved.config?.campaigns ?? [:]).sorted(by: { $0.key < $1.key })
            where config.apiKeyVariable != nil && resolved.run.apiKeys.key(for: campaign) == nil {
                problems.append("campaign \(campaign): its API key variable \(config.apiKeyVariable!) is not set here")
            }
            guard problems.isEmpty else {
                let noun = problems.count == 1 ? "problem" : "problems"
                throw JobError(
                    .usage,
                    "\(problems.count) \(noun) with \(resolved.run.table.displayName):\n" + problems.map { "  - \($0)" }.joined(separator: "\n"))
            }
            print("table \(resolved.run.table.displayName): every mapped column exists with a type the job can use")
        }
    }
}
