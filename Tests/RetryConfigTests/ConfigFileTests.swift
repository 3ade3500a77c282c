import Foundation
import LibPQ
import RetryConfig
import RetryCore
import RetryJob
import RetrySettings
import Testing

/// Each kind of config mistake gets its own clear message, with the line and key at fault.
struct ConfigFileTests {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    func problems(_ text: String) -> [ConfigProblem] {
        do {
            _ = try ConfigFile.parse(text, path: "t.toml")
            return []
        } catch let error as ConfigError {
            return error.problems
        } catch {
            Issue.record("unexpected error \(error)")
            return []
        }
    }

    @Test func theExampleFileInTheRepoIsValidAndMeansWhatItSays() throws {
        let path = Self.repoRoot.appendingPathComponent("postman-retry.example.toml").path
        let file = try ConfigFile.load(path: path)
        let table = try #require(file.table)
        #expect(table.displayName == "public.outbound_messages")
        #expect(file.otpCampaigns == ["otp-login"])
        #expect(file.campaigns["campaign-1"]?.rateLimit == 5)
        #expect(file.campaigns["campaign-1"]?.apiKeyVariable == "POSTMAN_KEY_REMINDERS")
        #expect(file.quietHours == QuietHours(start: 22 * 60, end: 7 * 60, timeZone: TimeZone(identifier: "Asia/Singapore")!))
        #expect(file.errorPolicy?.permanent == ["recipient_invalid", "content_invalid"])
        #expect(file.errorPolicy?.retryUnknown == false)
        #expect(file.pollTimeout == .seconds(1800))
    }

    @Test func invalidTOMLNamesTheLine() {
        let found = problems("[run]\nmax_age = \"72h\"\npoll_timeout = \n")
        #expect(found.count == 1)
        #expect(found.first?.line == 3)
        #expect(found.first?.message.contains("not valid TOML") == true)
    }

    @Test func anUnknownKeyIsRejectedWithDidYouMeanAndItsLine() {
        let found = problems("[table]\nname = \"sms\"\n\n[table.columns]\nmessag_id = \"mid\"\n")
        #expect(found.count == 1)
        #expect(found.first?.line == 5)
        #expect(found.first?.key == "table.columns.messag_id")
        #expect(found.first?.message.contains("did you mean 'message_id'?") == true)
    }

    @Test func anUnknownSectionIsRejected() {
        let found = problems("[quiet_hour]\nstart = \"22:00\"\n")
        #expect(found.first?.message.contains("did you mean 'quiet_hours'?") == true)
        #expect(found.first?.line == 1)
    }

    @Test func wrongTypesAndBadValuesAreNamed() {
        let found = problems(
            """
            [postman]
            rate_limit = "ten"
            api_url = "ftp://example"

            [run]
            max_age = "three days"
            limit = -1

            [campaigns.c1]
            rate_limit = 0
            api_key_env = "sk-live-123"

            [campaigns.c2]
            api_key_env = "key_live_Ab12Cd34Ef56Gh78"
            """)
        let byKey = Dictionary(found.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        #expect(byKey["postman.rate_limit"]?.message.contains("whole number") == true)
        #expect(byKey["postman.rate_limit"]?.line == 2)
        #expect(byKey["postman.api_url"]?.message.contains("not an http(s) URL") == true)
        #expect(byKey["run.max_age"]?.message.contains("not a positive duration") == true)
        #expect(byKey["run.max_age"]?.line == 6)
        #expect(byKey["run.limit"]?.message.contains("0 or more") == true)
        #expect(byKey["campaigns.c1.rate_limit"]?.message.contains("at least 1") == true)
        #expect(byKey["campaigns.c1.rate_limit"]?.line == 10)
        #expect(byKey["campaigns.c1.api_key_env"]?.message.contains("never the key itself") == true)
        // A key pasted where the variable's name goes (a valid variable name, too) is refused, and no message
        // repeats what was written there.
        #expect(byKey["campaigns.c2.api_key_env"]?.message.contains("looks like an API key") == true)
        #expect(!found.contains { $0.message.contains("sk-live-123") || $0.message.contains("Ab12Cd34") }, "\(found)")
        #expect(found.count == 7, "every problem at once: \(found)")
    }

    /// Issue 8, "Bad input": absurd values are refused by key, never clamped or crashed on.
    @Test func hostileValuesAreRefusedNamingTheKey() {
        let found = problems(
            """
            [postman]
            rate_limit = 1000000000

            [table]
            name = ""

            [campaigns.c1]
            rate_limit = 9223372036854775807

            [campaigns.c2]
            rate_limit = -5

            [campaigns.c3]
            rate_limit = 1e9

            [quiet_hours]
            start = "22:00"
            end = "07:00"
            time_zone = "Nowhere/Atlantis"
            """)
        let byKey = Dictionary(found.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        #expect(byKey["postman.rate_limit"]?.message.contains("at most 1000") == true)
        #expect(byKey["postman.rate_limit"]?.line == 2)
        #expect(byKey["table.name"]?.message.contains("must not be empty") == true)
        #expect(byKey["campaigns.c1.rate_limit"]?.message.contains("at most 1000") == true)
        #expect(byKey["campaigns.c2.rate_limit"]?.message.contains("at least 1, not -5") == true)
        #expect(byKey["campaigns.c3.rate_limit"]?.message.contains("whole number") == true)
        #expect(byKey["quiet_hours.time_zone"]?.message.contains("'Nowhere/Atlantis' is not a time zone") == true)
        #expect(byKey["quiet_hours.time_zone"]?.line == 19)
        #expect(found.count == 6, "every problem at once: \(found)")
        #expect(
            problems("[quiet_hours]\nstart = \"22:00\"\nend = \"07:00\"\ntime_zone = \"\"\n").first?.key
                == "quiet_hours.time_zone")
        #expect(problems("[postman]\nrate_limit = 1000\n").isEmpty, "the ceiling itself is taken")
    }

    @Test func quietHoursMistakes() {
        #expect(problems("[quiet_hours]\nstart = \"25:00\"\nend = \"07:00\"\n").first?.message.contains("HH:MM") == true)
        #expect(problems("[quiet_hours]\nstart = \"22:00\"\n").first?.message.contains("is required") == true)
        #expect(
            problems("[quiet_hours]\nstart = \"22:00\"\nend = \"07:00\"\ntime_zone = \"Mars/Olympus\"\n").first?.message
                .contains("not a time zone") == true)
        #expect(problems("[quiet_hours]\nstart = \"22:00\"\nend = \"22:00\"\n").first?.message.contains("empty") == true)
    }

    @Test func errorPolicyMistakes() {
        let both = problems("[errors]\npermanent = [\"routing_error\"]\nretryable = [\"routing_error\"]\n")
        #expect(both.first?.message.contains("both permanent and retryable") == true)
        #expect(problems("[errors]\nunknown = \"maybe\"\n").first?.message.contains("\"skip\" or \"retry\"") == true)
        #expect(problems("[errors]\npermanent = \"recipient_invalid\"\n").first?.message.contains("list of strings") == true)
    }

    @Test func tableMappingMistakes() {
        #expect(problems("[table.columns]\nstatus = \"\"\n").first?.message.contains("must name a column") == true)
        let shared = problems("[table.columns]\nerror_code = \"status\"\n")
        #expect(shared.first?.message.contains("already mapped to status") == true)
        #expect(problems("[table]\ncolumns = 3\n").first?.message.contains("must be a table") == true)
        let long = String(repeating: "x", count: 64)
        #expect(problems("[table.columns]\nkey = \"\(long)\"\n").first?.message.contains("63-byte") == true)
    }

    @Test func optionalColumnsCanBeSwitchedOff() throws {
        let file = try ConfigFile.parse("[table.columns]\nbatch_id = \"\"\n[otp]\ncolumn = \"\"\ncampaigns = [\"otp\"]\n")
        #expect(file.table?.batchId == nil)
        #expect(file.table?.isOtp == nil)
        #expect(file.table?.messageId == "message_id")
    }

    @Test func unknownCodesCanBeRetriedByPolicy() throws {
        let file = try ConfigFile.parse("[errors]\nunknown = \"retry\"\n")
        let policy = try #require(file.errorPolicy)
        #expect(policy.classify("some_new_code") == .retryable)
        #expect(policy.classify("recipient_invalid") == .permanent)
        #expect(ErrorPolicy.default.classify("some_new_code") == .unknown)
    }
}

/// flag > environment > file > default (CONTRACT.md section 5), and `config show` never shows a key.
struct SettingsPrecedenceTests {
    func withConfig(_ text: String, _ body: (String) throws -> Void) throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cfg-\(UUID().uuidString).toml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        try body(path)
    }

    @Test func flagBeatsEnvironmentBeatsFileBeatsDefault() throws {
        let text = """
            [postman]
            api_url = "http://file.example/api/v2"
            rate_limit = 4
            [run]
            poll_timeout = "10m"
            [campaigns.c1]
            rate_limit = 2
            api_key_env = "KEY_FOR_C1"
            """
        try withConfig(text) { path in
            var flags = CommandLineValues()
            flags.configPath = path
            var resolved = try SettingsResolver.resolve(flags, environment: [:])
            #expect(resolved.run.apiURL == "http://file.example/api/v2")
            #expect(resolved.run.defaultRateLimit == 4)
            #expect(resolved.run.pollTimeout == .seconds(600))
            #expect(resolved.run.rateLimit(for: "c1") == 2)
            #expect(resolved.run.scope.maxAgeSeconds == 72 * 3600)
            #expect(resolved.shown.first { $0.name == "max_age" }?.source == .default)
            #expect(resolved.shown.first { $0.name == "api_url" }?.source == .file)

            resolved = try SettingsResolver.resolve(flags, environment: ["POSTMAN_API_URL": "http://env.example"])
            #expect(resolved.run.apiURL == "http://env.example")
            #expect(resolved.shown.first { $0.name == "api_url" }?.source == .environment)

            flags.apiURL = "http://flag.example"
            flags.rateLimit = 8
            flags.campaignRates = ["c1=3"]
            flags.pollTimeout = "1m"
            resolved = try SettingsResolver.resolve(flags, environment: ["POSTMAN_API_URL": "http://env.example"])
            #expect(resolved.run.apiURL == "http://flag.example")
            #expect(resolved.run.defaultRateLimit == 8 && resolved.run.rateLimit(for: "c1") == 3)
            #expect(resolved.run.pollTimeout == .seconds(60))
            #expect(resolved.shown.first { $0.name == "rate_limit[c1]" }?.source == .flag)

            // An empty variable counts as unset; a flag or a variable that is no http(s) URL is refused at
            // once, as the file's value is (it used to open a run, back off for two minutes and exit 69).
            flags.apiURL = nil
            resolved = try SettingsResolver.resolve(flags, environment: ["POSTMAN_API_URL": ""])
            #expect(resolved.run.apiURL == "http://file.example/api/v2")
            for (flag, variable, named) in [
                ("notaurl", nil, "--api-url"), ("ftp://x/y", nil, "--api-url"), ("https://", nil, "--api-url"),
                (nil, "notaurl", "POSTMAN_API_URL"), (nil, "https:///api/v2", "POSTMAN_API_URL")
            ] as [(String?, String?, String)] {
                flags.apiURL = flag
                do {
                    _ = try SettingsResolver.resolve(flags, environment: variable.map { ["POSTMAN_API_URL": $0] } ?? [:])
                    Issue.record("\(flag ?? variable ?? "") was taken as Postman's URL")
                } catch let error as JobError {
                    #expect(error.status == .usage && error.message.hasPrefix(named), "\(error.message)")
                }
            }
        }
    }

    /// Flags that can select nothing are refused as the file's values are: `--max-age 0`, a `--since` not
    /// before `--until`, an empty `--campaign` (each used to give an empty plan and exit 0).
    @Test func flagsThatCanSelectNothingAreRefused() throws {
        var cases: [(CommandLineValues, String)] = []
        var flags = CommandLineValues()
        flags.maxAge = "0s"
        cases.append((flags, "--max-age"))
        flags = CommandLineValues()
        flags.since = "2026-12-07"
        flags.until = "2026-12-01"
        cases.append((flags, "--since"))
        flags = CommandLineValues()
        flags.campaigns = ["c1", ""]
        cases.append((flags, "--campaign"))
        for (flags, named) in cases {
            do {
                _ = try SettingsResolver.resolve(flags, environment: [:])
                Issue.record("\(named): accepted")
            } catch let error as JobError {
                #expect(error.status == .usage && error.message.hasPrefix(named), "\(error.message)")
            }
        }
        flags = CommandLineValues()
        flags.since = "2026-12-01"
        flags.until = "2026-12-07"
        #expect(try SettingsResolver.resolve(flags, environment: [:]).run.scope.since != nil)
    }

    /// Issue 15: `[run] whole_batch` and `--no-whole-batch` turn whole-batch retries off; on by default.
    @Test func wholeBatchRetriesAreOnByDefaultAndTheFileOrTheFlagTurnsThemOff() throws {
        let wrong = ConfigFileTests().problems("[run]\nwhole_batch = \"yes\"\n")
        #expect(wrong.first { $0.key == "run.whole_batch" }?.message.contains("true or false") == true, "\(wrong)")
        #expect(try SettingsResolver.resolve(CommandLineValues(), environment: [:]).run.wholeBatchRetries)
        try withConfig("[run]\nwhole_batch = false\n") { path in
            var flags = CommandLineValues()
            flags.configPath = path
            let resolved = try SettingsResolver.resolve(flags, environment: [:])
            #expect(!resolved.run.wholeBatchRetries)
            #expect(resolved.shown.first { $0.name == "whole_batch" }?.source == .file)
        }
        try withConfig("[run]\nwhole_batch = true\n") { path in
            var flags = CommandLineValues()
            flags.configPath = path
            flags.wholeBatch = false
            let resolved = try SettingsResolver.resolve(flags, environment: [:])
            #expect(!resolved.run.wholeBatchRetries, "the flag wins over the file")
            #expect(resolved.shown.first { $0.name == "whole_batch" }?.source == .flag)
        }
    }

    @Test func theConfigPathComesFromTheEnvironmentWhenNoFlag() throws {
        try withConfig("[postman]\nrate_limit = 6\n") { path in
            let resolved = try SettingsResolver.resolve(CommandLineValues(), environment: ["POSTMAN_RETRY_CONFIG": path])
            #expect(resolved.run.defaultRateLimit == 6)
            #expect(resolved.shown.first { $0.name == "config" }?.source == .environment)
        }
    }

    @Test func aBadFileIsAUsageErrorListingEveryProblem() throws {
        try withConfig("[postman]\nrate_limt = 6\n[run]\nlimit = \"x\"\n") { path in
            var flags = CommandLineValues()
            flags.configPath = path
            #expect {
                try SettingsResolver.resolve(flags, environment: [:])
            } throws: { error in
                guard let error = error as? JobError else { return false }
                return error.status == .usage && error.message.contains("2 problems") && error.message.contains("line 2")
                    && error.message.contains("did you mean 'rate_limit'?") && error.message.contains("line 4")
            }
        }
    }

    @Test func absurdRateFlagsAreUsageErrors() {
        for (rate, campaignRates, wording) in [
            (0, [String](), "--rate-limit must be at least 1"), (-5, [], "--rate-limit must be at least 1"),
            (1_000_000_000, [], "--rate-limit must be at most 1000"),
            (nil, ["c1=1001"], "--campaign-rate c1: must be at most 1000"),
            (nil, ["c1=-5"], "is not ID=TPS"), (nil, ["c1=1e9"], "is not ID=TPS")
        ] as [(Int?, [String], String)] {
            var flags = CommandLineValues()
            flags.rateLimit = rate
            flags.campaignRates = campaignRates
            #expect("\(rate.map(String.init) ?? campaignRates.joined())") {
                try SettingsResolver.resolve(flags, environment: [:])
            } throws: { error in
                (error as? JobError)?.status == .usage && (error as? JobError)?.message.contains(wording) == true
            }
        }
    }

    @Test func aMissingFileIsAUsageError() {
        var flags = CommandLineValues()
        flags.configPath = "/nonexistent/postman-retry.toml"
        #expect { try SettingsResolver.resolve(flags, environment: [:]) } throws: { error in
            (error as? JobError)?.status == .usage && "\(error)".contains("/nonexistent/postman-retry.toml")
        }
    }

    @Test func keysComeFromTheNamedVariableAndAreNeverShown() throws {
        try withConfig("[campaigns.c1]\napi_key_env = \"KEY_FOR_C1\"\n") { path in
            var flags = CommandLineValues()
            flags.configPath = path
            flags.campaigns = ["c2"]
            let secret = "sk-very-secret-value"
            let env = ["KEY_FOR_C1": secret, "POSTMAN_API_KEY_C1": "other", "POSTMAN_API_KEY": "shared-secret"]
            let resolved = try SettingsResolver.resolve(flags, environment: env)
            #expect(resolved.run.apiKeys.key(for: "c1") == secret, "the named variable wins for its campaign")
            #expect(resolved.run.apiKeys.key(for: "c2") == "shared-secret")
            let shown = resolved.shown.map { "\($0.name) \($0.value)" }.joined(separator: "\n")
            #expect(!shown.contains(secret) && !shown.contains("shared-secret") && !shown.contains("other"))
            #expect(shown.contains("api_key[c1] from KEY_FOR_C1 (redacted)"))
            #expect(!"\(resolved.run.apiKeys)".contains(secret))

            let missing = try SettingsResolver.resolve(flags, environment: ["POSTMAN_API_KEY": "x"])
            #expect(missing.run.apiKeys.key(for: "c1") == nil, "a named variable that is unset is not replaced by another key")
            #expect(missing.shown.contains { $0.value == "MISSING: set KEY_FOR_C1" })
        }
    }

    @Test func passwordsInTheDatabaseURLAreRedacted() {
        #expect(SettingsResolver.redactedDatabaseURL("postgresql://u:pw@h/db") == "postgresql://u:*****@h/db")
        #expect(SettingsResolver.redactedDatabaseURL("host=h password=pw dbname=d") == "host=h password=***** dbname=d")
    }
}

struct QuietHoursTests {
    let singapore = TimeZone(identifier: "Asia/Singapore")!

    func at(_ text: String) -> Date { PGTimestamp.parse(text)! }

    @Test func aWindowAcrossMidnight() {
        let quiet = QuietHours(start: 22 * 60, end: 7 * 60, timeZone: singapore)
        #expect(quiet.contains(at("2026-12-01T22:00:00+08:00")))
        #expect(quiet.contains(at("2026-12-01T23:59:00+08:00")))
        #expect(quiet.contains(at("2026-12-02T06:59:00+08:00")))
        #expect(!quiet.contains(at("2026-12-02T07:00:00+08:00")))
        #expect(!quiet.contains(at("2026-12-01T21:59:00+08:00")))
        // 14:30 UTC is 22:30 in Singapore.
        #expect(quiet.contains(at("2026-12-01T14:30:00Z")))
    }

    @Test func aWindowWithinADay() {
        let quiet = QuietHours(start: 12 * 60, end: 13 * 60, timeZone: singapore)
        #expect(quiet.contains(at("2026-12-01T12:30:00+08:00")))
        #expect(!quiet.contains(at("2026-12-01T13:00:00+08:00")))
        #expect(!quiet.contains(at("2026-12-01T11:59:00+08:00")))
    }

    @Test func timesOfDayParse() {
        #expect(QuietHours.parseTimeOfDay("07:05") == 425)
        #expect(QuietHours.parseTimeOfDay("7:05") == nil)
        #expect(QuietHours.parseTimeOfDay("24:00") == nil)
        #expect(QuietHours.parseTimeOfDay("12:60") == nil)
    }
}
