import Foundation
import PostmanAPI
import RetryCore
import RetrySettings
import TOMLKit

/// One thing wrong with a config file, located by line and key.
public struct ConfigProblem: Sendable, Equatable, CustomStringConvertible {
    public var line: Int?
    /// The dotted key at fault, e.g. `table.columns.message_id`.
    public var key: String
    public var message: String

    public var description: String {
        (line.map { "line \($0): " } ?? "") + (key.isEmpty ? "" : "\(key): ") + message
    }
}

/// Every problem found in a config file (all at once, so one edit can fix them all). Exit 64.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var problems: [ConfigProblem]

    public var description: String {
        let noun = problems.count == 1 ? "problem" : "problems"
        return "config file \(path) has \(problems.count) \(noun):\n"
            + problems.map { "  \(path): \($0)" }.joined(separator: "\n")
    }

    public var jobError: JobError { JobError(.usage, description) }
}

/// Per-campaign settings from the file.
public struct CampaignConfig: Sendable, Equatable {
    public var rateLimit: Int?
    /// The environment variable that holds this campaign's API key (the key itself never goes in a file).
    public var apiKeyVariable: String?
}

/// Figures for the report's cost estimate (SGD; postman-v2-api.md, pricing from 1 July 2025).
public struct CostSettings: Sendable, Equatable {
    public var localPerSegment = 0.046
    public var foreignPerSegment = 0.23
    public var gstRate = 0.09
    public var segmentsPerMessage = 1
    public init() {}
}

/// A parsed, validated config file. Every field is optional: what the file does not say comes from
/// the environment or the defaults (flag > environment > file > default, CONTRACT.md section 5).
public struct ConfigFile: Sendable {
    public var path: String
    public var apiURL: String?
    /// `[postman] proxy`: an http:// proxy to reach Postman through (HTTPS_PROXY wins).
    public var proxy: String?
    /// `[postman] no_proxy`: hosts reached directly (NO_PROXY wins); a string or a list.
    public var noProxy: String?
    /// `[postman] ca_file`: extra CA certificates (PEM); relative to the config file's directory.
    public var caFile: String?
    public var rateLimit: Int?
    public var requestTimeout: Duration?
    public var maxAge: Duration?
    public var pollTimeout: Duration?
    public var limit: Int?
    /// `[run] whole_batch`: false retries every batch member by its own call (issue 15).
    public var wholeBatch: Bool?
    /// The agency table, defaults filled in for columns the file does not name; nil when the file has no `[table]`.
    public var table: AgencyTable?
    public var otpCampaigns: [String]?
    public var campaigns: [String: CampaignConfig] = [:]
    public var quietHours: QuietHours?
    public var errorPolicy: ErrorPolicy?
    public var cost: CostSettings?

    /// Reads and validates the file at `path`.
    public static func load(path: String) throws -> ConfigFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw JobError(.usage, "config file \(path): cannot be read (does it exist?)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw JobError(.usage, "config file \(path): is not UTF-8 text")
        }
        return try parse(text, path: path)
    }

    /// Parses and validates TOML text; throws `ConfigError` listing every problem.
    public static func parse(_ text: String, path: String = "config") throws -> ConfigFile {
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigError(
                path: path,
                problems: [ConfigProblem(line: error.source.begin.line, key: "", message: "not valid TOML: \(error.description)")]
            )
        }
        var reader = ConfigReader(locator: TOMLLocator(text))
        let file = reader.read(root, path: path)
        if !reader.problems.isEmpty { throw ConfigError(path: path, problems: reader.problems) }
        return file
    }
}

/// The keys each table accepts; anything else is a mistake worth naming.
enum ConfigKeys {
    static let root = ["postman", "run", "table", "otp", "campaigns", "quiet_hours", "errors", "cost"]
    static let postman = ["api_url", "rate_limit", "request_timeout", "proxy", "no_proxy", "ca_file"]
    static let run = ["max_age", "poll_timeout", "limit", "whole_batch"]
    static let table = ["schema", "name", "columns"]
    static let columns = [
        "key", "message_id", "campaign_id", "batch_id", "recipient", "status", "retry_count", "error_code", "created_at",
        "updated_at"
    ]
    static let otp = ["column", "campaigns"]
    static let campaign = ["rate_limit", "api_key_env"]
    static let quietHours = ["start", "end", "time_zone"]
    static let errors = ["permanent", "retryable", "unknown"]
    static let cost = ["local_per_segment", "foreign_per_segment", "gst_rate", "segments_per_message"]
}

/// Walks the TOML tree, converting values and collecting problems instead of stopping at the first.
struct ConfigReader {
    let locator: TOMLLocator
    var problems: [ConfigProblem] = []

    mutating func problem(_ path: [String], _ message: String) {
        problems.append(ConfigProblem(line: locator.line(of: path), key: path.joined(separator: "."), message: message))
    }

    /// Names keys of `table` that are not in `allowed`, with a suggestion when one is close.
    mutating func rejectUnknown(_ table: TOMLTable, at path: [String], allowed: [String]) {
        for key in table.keys where !allowed.contains(key) {
            let hint = suggestion(for: key, among: allowed).map { "; did you mean '\($0)'?" } ?? ""
            let location = path.isEmpty ? "at the top level" : "in [\(path.joined(separator: "."))]"
            problem(path + [key], "unknown key \(location)\(hint) (known: \(allowed.joined(separator: ", ")))")
        }
    }

    mutating func subtable(_ table: TOMLTable, _ key: String, at path: [String]) -> TOMLTable? {
        guard let value = table[key] else { return nil }
        guard let sub = value.table else {
            problem(path + [key], "must be a table ([\((path + [key]).joined(separator: "."))]), not \(value.type)")
            return nil
        }
        return sub
    }

    mutating func string(_ table: TOMLTable, _ key: String, at path: [String]) -> String? {
        guard let value = table[key] else { return nil }
        guard let text = value.string else {
            problem(path + [key], "must be a string, not \(value.type) (\(value.debugDescription))")
            return nil
        }
        return text
    }

    mutating func bool(_ table: TOMLTable, _ key: String, at path: [String]) -> Bool? {
        guard let value = table[key] else { return nil }
        guard let flag = value.bool else {
            problem(path + [key], "must be true or false, not \(value.type) (\(value.debugDescription))")
            return nil
        }
        return flag
    }

    mutating func positiveInt(_ table: TOMLTable, _ key: String, at path: [String], allowZero: Bool = false) -> Int? {
        guard let value = table[key] else { return nil }
        guard let number = value.int else {
            problem(path + [key], "must be a whole number, not \(value.type) (\(value.debugDescription))")
            return nil
        }
        guard number > 0 || (allowZero && number == 0) else {
            problem(path + [key], "must be \(allowZero ? "0 or more" : "at least 1"), not \(number)")
            return nil
        }
        return number
    }

    /// A rate limit in requests per second: at least 1 and at most `SettingsResolver.maxRateLimit`.
    mutating func rateLimit(_ table: TOMLTable, _ key: String, at path: [String]) -> Int? {
        guard let rate = positiveInt(table, key, at: path) else { return nil }
        guard rate <= SettingsResolver.maxRateLimit else {
            problem(path + [key], SettingsResolver.rateLimitTooHigh(rate))
            return nil
        }
        return rate
    }

    mutating func nonNegativeDouble(_ table: TOMLTable, _ key: String, at path: [String]) -> Double? {
        guard let value = table[key] else { return nil }
        guard let number = value.double ?? value.int.map(Double.init) else {
            problem(path + [key], "must be a number, not \(value.type) (\(value.debugDescription))")
            return nil
        }
        guard number >= 0, number.isFinite else {
            problem(path + [key], "must not be negative, not \(number)")
            return nil
        }
        return number
    }

    mutating func duration(_ table: TOMLTable, _ key: String, at path: [String]) -> Duration? {
        guard let text = string(table, key, at: path) else { return nil }
        guard let duration = parseDuration(text), duration > .zero else {
            problem(path + [key], "'\(text)' is not a positive duration (write e.g. \"30m\", \"72h\", \"2d\")")
            return nil
        }
        return duration
    }

    mutating func strings(_ table: TOMLTable, _ key: String, at path: [String]) -> [String]? {
        guard let value = table[key] else { return nil }
        guard let array = value.array else {
            problem(path + [key], "must be a list of strings, e.g. [\"a\", \"b\"], not \(value.type)")
            return nil
        }
        var result: [String] = []
        for (index, element) in array.enumerated() {
            guard let text = element.string else {
                problem(path + [key], "item \(index + 1) must be a string, not \(element.type)")
                continue
            }
            result.append(text)
        }
        return result
    }

    mutating func read(_ root: TOMLTable, path: String) -> ConfigFile {
        var file = ConfigFile(path: path)
        rejectUnknown(root, at: [], allowed: ConfigKeys.root)

        if let postman = subtable(root, "postman", at: []) {
            let at = ["postman"]
            rejectUnknown(postman, at: at, allowed: ConfigKeys.postman)
            if let url = string(postman, "api_url", at: at) {
                if isHTTPURL(url) {
                    file.apiURL = url
                } else {
                    problem(at + ["api_url"], "'\(url)' is not an http(s) URL")
                }
            }
            file.rateLimit = rateLimit(postman, "rate_limit", at: at)
            file.requestTimeout = duration(postman, "request_timeout", at: at)
            if let proxy = string(postman, "proxy", at: at) {
                do {
                    _ = try ProxySettings.parse(proxy, setting: "proxy")
                    file.proxy = proxy
                } catch let error as NetworkSettingsError {
                    problem(at + ["proxy"], error.problem)
                } catch {
                    problem(at + ["proxy"], "\(error)")
                }
            }
            if let value = postman["no_proxy"] {
                if value.string != nil {
                    file.noProxy = string(postman, "no_proxy", at: at)
                } else {
                    file.noProxy = strings(postman, "no_proxy", at: at)?.joined(separator: ",")
                }
            }
            if let caPath = string(postman, "ca_file", at: at) {
                if caPath.isEmpty {
                    problem(at + ["ca_file"], "must name a PEM file (leave it out for the system's trust store only)")
                } else if caPath.hasPrefix("/") {
                    file.caFile = caPath
                } else {
                    // Relative to the file that names it, not to wherever the job happens to start.
                    let directory = (path as NSString).deletingLastPathComponent
                    file.caFile = directory.isEmpty ? caPath : (directory as NSString).appendingPathComponent(caPath)
                }
            }
        }

        if let run = subtable(root, "run", at: []) {
            let at = ["run"]
            rejectUnknown(run, at: at, allowed: ConfigKeys.run)
            file.maxAge = duration(run, "max_age", at: at)
            file.pollTimeout = duration(run, "poll_timeout", at: at)
            file.limit = positiveInt(run, "limit", at: at, allowZero: true)
            file.wholeBatch = bool(run, "whole_batch", at: at)
        }

        if let table = subtable(root, "table", at: []) {
            file.table = readTable(table)
        }
        let otp = subtable(root, "otp", at: [])
        if let otp {
            rejectUnknown(otp, at: ["otp"], allowed: ConfigKeys.otp)
            file.otpCampaigns = strings(otp, "campaigns", at: ["otp"])
        }
        // The OTP column belongs to the table mapping: `column = ""` says the table has none.
        if let otp, let column = string(otp, "column", at: ["otp"]) {
            var table = file.table ?? .reference
            table.isOtp = column.isEmpty ? nil : column
            file.table = table
        }

        if let campaigns = subtable(root, "campaigns", at: []) {
            for id in campaigns.keys {
                let at = ["campaigns", id]
                guard let entry = subtable(campaigns, id, at: ["campaigns"]) else { continue }
                rejectUnknown(entry, at: at, allowed: ConfigKeys.campaign)
                var config = CampaignConfig()
                config.rateLimit = rateLimit(entry, "rate_limit", at: at)
                if let variable = string(entry, "api_key_env", at: at) {
                    // The value is never repeated in a message: a key pasted here by mistake would go to the logs.
                    let lower = variable.lowercased()
                    if lower.hasPrefix("key_live_") || lower.hasPrefix("key_test_") {
                        problem(
                            at + ["api_key_env"],
                            "holds what looks like an API key (key_live_… / key_test_…), not the name of a variable; "
                                + "put the key in the environment and name that variable here (rotate the key if this file was shared)"
                        )
                    } else if Self.isEnvironmentName(variable) {
                        config.apiKeyVariable = variable
                    } else {
                        problem(
                            at + ["api_key_env"],
                            "is not an environment variable name (letters, digits and _, not starting with a digit; the value is "
                                + "not shown, in case it is a key); name the variable here, never the key itself")
                    }
                }
                file.campaigns[id] = config
            }
        }

        if let quiet = subtable(root, "quiet_hours", at: []) {
            file.quietHours = readQuietHours(quiet)
        }
        if let errors = subtable(root, "errors", at: []) {
            file.errorPolicy = readErrors(errors)
        }
        if let cost = subtable(root, "cost", at: []) {
            let at = ["cost"]
            rejectUnknown(cost, at: at, allowed: ConfigKeys.cost)
            var settings = CostSettings()
            settings.localPerSegment = nonNegativeDouble(cost, "local_per_segment", at: at) ?? settings.localPerSegment
            settings.foreignPerSegment = nonNegativeDouble(cost, "foreign_per_segment", at: at) ?? settings.foreignPerSegment
            settings.gstRate = nonNegativeDouble(cost, "gst_rate", at: at) ?? settings.gstRate
            settings.segmentsPerMessage = positiveInt(cost, "segments_per_message", at: at) ?? settings.segmentsPerMessage
            file.cost = settings
        }
        return file
    }

    mutating func readTable(_ table: TOMLTable) -> AgencyTable {
        let at = ["table"]
        rejectUnknown(table, at: at, allowed: ConfigKeys.table)
        var mapping = AgencyTable.reference
        if let name = string(table, "name", at: at) {
            if name.isEmpty { problem(at + ["name"], "must not be empty") } else { mapping.table = name }
        }
        if let schema = string(table, "schema", at: at) {
            if schema.isEmpty {
                problem(at + ["schema"], "must not be empty (leave it out for the search path)")
            } else {
                mapping.schema = schema
            }
        }
        guard let columns = subtable(table, "columns", at: at) else { return mapping }
        let cat = at + ["columns"]
        rejectUnknown(columns, at: cat, allowed: ConfigKeys.columns)
        func column(_ key: String, optional: Bool = false) -> String?? {
            guard let name = string(columns, key, at: cat) else { return .none }
            if name.isEmpty {
                if optional { return .some(nil) }
                problem(cat + [key], "must name a column; the job cannot work without it")
                return .none
            }
            if name.utf8.count > 63 {
                problem(cat + [key], "'\(name.prefix(70))' is longer than PostgreSQL's 63-byte identifier limit")
                return .none
            }
            return .some(name)
        }
        if case .some(let name?) = column("key") { mapping.key = name }
        if case .some(let name?) = column("message_id") { mapping.messageId = name }
        if case .some(let name?) = column("campaign_id") { mapping.campaignId = name }
        if case .some(let name) = column("batch_id", optional: true) { mapping.batchId = name }
        if case .some(let name?) = column("recipient") { mapping.recipient = name }
        if case .some(let name?) = column("status") { mapping.status = name }
        if case .some(let name?) = column("retry_count") { mapping.retryCount = name }
        if case .some(let name?) = column("error_code") { mapping.errorCode = name }
        if case .some(let name?) = column("created_at") { mapping.createdAt = name }
        if case .some(let name?) = column("updated_at") { mapping.updatedAt = name }
        // The job writes status, retry count, error code and updated_at: two of them in one column
        // would make its compare-and-set meaningless.
        let written = [
            ("status", mapping.status), ("retry_count", mapping.retryCount), ("error_code", mapping.errorCode),
            ("updated_at", mapping.updatedAt)
        ]
        for (index, (key, name)) in written.enumerated() {
            if let other = written[..<index].first(where: { $0.1 == name }) {
                problem(cat + [key], "'\(name)' is already mapped to \(other.0); each written column must be its own")
            }
        }
        return mapping
    }

    mutating func readQuietHours(_ quiet: TOMLTable) -> QuietHours? {
        let at = ["quiet_hours"]
        rejectUnknown(quiet, at: at, allowed: ConfigKeys.quietHours)
        var start: Int?
        var end: Int?
        for key in ["start", "end"] {
            guard let text = string(quiet, key, at: at) else {
                if quiet[key] == nil { problem(at + [key], "is required when [quiet_hours] is present (e.g. \"22:00\")") }
                continue
            }
            guard let minutes = QuietHours.parseTimeOfDay(text) else {
                problem(at + [key], "'\(text)' is not a time of day as HH:MM on a 24-hour clock (e.g. \"07:00\")")
                continue
            }
            if key == "start" { start = minutes } else { end = minutes }
        }
        let zoneName = string(quiet, "time_zone", at: at) ?? QuietHours.defaultTimeZone
        guard let zone = TimeZone(identifier: zoneName) else {
            problem(at + ["time_zone"], "'\(zoneName)' is not a time zone name of the tz database (e.g. \"Asia/Singapore\")")
            return nil
        }
        guard let start, let end else { return nil }
        if start == end { problem(at + ["end"], "equals start, so the window is empty; remove [quiet_hours] instead") }
        return QuietHours(start: start, end: end, timeZone: zone)
    }

    mutating func readErrors(_ errors: TOMLTable) -> ErrorPolicy {
        let at = ["errors"]
        rejectUnknown(errors, at: at, allowed: ConfigKeys.errors)
        var policy = ErrorPolicy.default
        if let permanent = strings(errors, "permanent", at: at) { policy.permanent = Set(permanent) }
        if let retryable = strings(errors, "retryable", at: at) { policy.retryable = Set(retryable) }
        for code in policy.permanent.intersection(policy.retryable).sorted() {
            problem(at + ["retryable"], "'\(code)' is listed as both permanent and retryable")
        }
        if let unknown = string(errors, "unknown", at: at) {
            switch unknown {
            case "skip": policy.retryUnknown = false
            case "retry": policy.retryUnknown = true
            default: problem(at + ["unknown"], "must be \"skip\" or \"retry\", not '\(unknown)'")
            }
        }
        return policy
    }

    static func isEnvironmentName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, !("0"..."9").contains(first) else { return false }
        return name.unicodeScalars.allSatisfy {
            ("A"..."Z").contains($0) || ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_"
        }
    }
}

/// Postman's base URL, from whichever source: http or https, with a host.
func isHTTPURL(_ text: String) -> Bool {
    guard let parsed = URL(string: text), ["http", "https"].contains(parsed.scheme?.lowercased() ?? "") else { return false }
    return !(parsed.host ?? "").isEmpty
}
