import ArgumentParser
import Foundation
import LibPQ
import Logging
import RetryConfig
import RetryJob
import RetryJournal
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
        discussion: """
            Exit 0 when everything fits, 64 listing every problem at once, 75 when the database is unreachable. \
            With --check-keys, also one read per campaign (GET /campaigns/{id}/messages?limit=1) to see whether Postman \
            accepts its key from this machine: 77 when a key or this source IP is refused, 69 when Postman cannot be reached safely.
            """)

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Also ask Postman, with one read per campaign, whether it accepts each campaign's key from here.")
    var checkKeys = false

    @Option(
        name: .customLong("campaign"),
        help:
            "With --check-keys: the campaigns to check (repeatable; default: those of the config file, else those in the table).")
    var campaigns: [String] = []

    @Option(help: "With --check-keys: Postman API base URL (else POSTMAN_API_URL, else the config file).")
    var apiURL: String?

    func validate() throws {
        if !checkKeys, !campaigns.isEmpty || apiURL != nil { throw ValidationError("--campaign and --api-url need --check-keys") }
    }

    func run() async throws {
        let logger = global.makeLogger()
        try await runReportingExit {
            let environment = ProcessInfo.processInfo.environment
            // File problems (unknown keys, bad values) come out of resolve as one usage error listing them all.
            var values = global.commandLineValues
            values.apiURL = apiURL
            let resolved = try SettingsResolver.resolve(values, environment: environment)
            let source = resolved.config.map { "config file \($0.path)" } ?? "no config file (the reference table)"
            print("\(source): valid")
            let db = try await connect(global, logger: logger)
            do {
                try await check(resolved, db: db, logger: logger)
                await db.close()
            } catch {
                await db.close()
                throw error
            }
        }
    }

    private func check(_ resolved: ResolvedSettings, db: PGConnection, logger: Logger) async throws {
        let result = try await TableCheck(table: resolved.run.table).run(db)
        var toCheck = campaigns
        if checkKeys, toCheck.isEmpty {
            toCheck = (resolved.config?.campaigns ?? [:]).keys.sorted()
            if toCheck.isEmpty, result.problems.isEmpty {
                toCheck = try await CredentialCheck.campaigns(in: resolved.run.table, db: db, limit: 100)
            }
        }
        var notes = result.notes + result.slowPaths
        // `run` refuses a schema that is not up to date (64); said here too, so that a check does not pass for a
        // run that would not start. A note, not a problem: during an upgrade the check comes before `migrate`.
        let pending = try await Migrator().pending(db)
        if !pending.isEmpty {
            notes.append(
                "the job's own schema (postman_retry) lacks \(pending.joined(separator: ", ")): run `postman-retry migrate` "
                    + "before `postman-retry run`")
        }
        for note in notes { print("note: \(note)") }
        if !result.suggestedIndexes.isEmpty {
            print(result.suggestedIndexes.count == 1 ? "to add it:" : "to add them:")
            for index in result.suggestedIndexes { print("  \(index)") }
        }
        var problems = result.problems
        for (campaign, config) in (resolved.config?.campaigns ?? [:]).sorted(by: { $0.key < $1.key })
        where config.apiKeyVariable != nil && resolved.run.apiKeys.key(for: campaign) == nil {
            problems.append("campaign \(campaign): its API key variable \(config.apiKeyVariable!) is not set here")
        }
        guard problems.isEmpty else {
            let noun = problems.count == 1 ? "problem" : "problems"
            throw JobError(
                .usage,
                "\(problems.count) \(noun) with \(resolved.run.table.displayName):\n"
                    + problems.map { "  - \($0)" }.joined(separator: "\n"))
        }
        print("table \(resolved.run.table.displayName): every mapped column exists with a type the job can use")
        if checkKeys { try await checkKeysWithPostman(resolved.run, campaigns: toCheck, db: db, logger: logger) }
    }

    private func checkKeysWithPostman(_ settings: RunSettings, campaigns: [String], db: PGConnection, logger: Logger) async throws
    {
        guard !campaigns.isEmpty else {
            print("keys: no campaign to check (name one with --campaign)")
            return
        }
        let verdicts = try await CredentialCheck.run(settings: settings, campaigns: campaigns, db: db, logger: logger)
        var refused: [String] = []
        var missing: [String] = []
        for (campaign, verdict) in verdicts {
            switch verdict {
            case .accepted: print("campaign \(campaign): key accepted by \(settings.apiURL)")
            case .noKey(let variables):
                missing.append(campaign)
                print("campaign \(campaign): no API key set here (set \(variables.joined(separator: " or ")))")
            case .refused(let why):
                refused.append(campaign)
                print("campaign \(campaign): REFUSED: \(why)")
            case .failed(let why): print("campaign \(campaign): could not check: \(why)")
            }
        }
        if !refused.isEmpty {
            throw JobError(
                .noPermission,
                "Postman refused the key or this machine's source IP for \(refused.joined(separator: ", ")): check the key and the IP whitelist"
            )
        }
        if !missing.isEmpty { throw JobError(.usage, "no API key for \(missing.joined(separator: ", "))") }
    }
}
