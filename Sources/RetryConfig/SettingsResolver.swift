import Foundation
import LibPQ
import PostmanAPI
import RetryCore
import RetrySettings

/// What the command line said; nil means "not given", so the environment, the file or the default decides.
public struct CommandLineValues: Sendable {
    public var configPath: String?
    public var databaseURL: String?
    public var apiURL: String?
    public var campaigns: [String] = []
    public var since: String?
    public var until: String?
    public var maxAge: String?
    public var limit: Int?
    public var rateLimit: Int?
    public var campaignRates: [String] = []
    public var pollTimeout: String?
    /// `--ca-file`: extra CA certificates (PEM) to trust for Postman's TLS certificate.
    public var caFile: String?
    /// `--no-whole-batch` gives false: every batch member by its own retry call.
    public var wholeBatch: Bool?

    public init() {}
}

/// Where an effective setting came from.
public enum SettingSource: String, Sendable, Codable {
    case flag, environment, file, `default`
}

/// One line of `config show`.
public struct ShownSetting: Sendable, Codable, Equatable {
    public var name: String
    public var value: String
    public var source: SettingSource
}

/// The settings a command runs with, and where each came from.
public struct ResolvedSettings: Sendable {
    public var run: RunSettings
    public var databaseURL: String?
    public var config: ConfigFile?
    public var shown: [ShownSetting]
    public var cost: CostSettings
}

/// Applies the precedence of CONTRACT.md section 5: flag > environment > config file > default.
public enum SettingsResolver {
    public static let defaultAPIURL = SettingDefaults.apiURL

    /// The highest rate limit taken, per campaign (`SettingDefaults.maxRateLimit`).
    public static let maxRateLimit = SettingDefaults.maxRateLimit

    static func rateLimitTooHigh(_ rate: Int) -> String {
        "must be at most \(maxRateLimit) requests per second, not \(rate) (Postman's default is 10 per campaign; "
            + "set what the campaign's Settings tab shows)"
    }

    public static func resolve(
        _ flags: CommandLineValues, environment: [String: String], clock: @escaping @Sendable () -> Date = { Date() }
    ) throws -> ResolvedSettings {
        var shown: [ShownSetting] = []
        func pick<T>(_ name: String, flag: T?, env: T? = nil, file: T?, default value: T, show: (T) -> String) -> T {
            let (chosen, source): (T, SettingSource) =
                if let flag { (flag, .flag) } else if let env { (env, .environment) } else if let file { (file, .file) } else {
                    (value, .default)
                }
            shown.append(ShownSetting(name: name, value: show(chosen), source: source))
            return chosen
        }

        let configPath = flags.configPath ?? environment["POSTMAN_RETRY_CONFIG"].flatMap { $0.isEmpty ? nil : $0 }
        let config = try configPath.map { path -> ConfigFile in
            do { return try ConfigFile.load(path: path) } catch let error as ConfigError { throw error.jobError }
        }
        if let configPath {
            shown.append(
                ShownSetting(name: "config", value: configPath, source: flags.configPath != nil ? .flag : .environment))
        }

        let databaseURL = pick(
            "database", flag: flags.databaseURL.map { Optional($0) }, env: environment["DATABASE_URL"].map { Optional($0) },
            file: String??.none,
            default: nil as String?, show: { $0.map(redactedDatabaseURL) ?? "libpq defaults (PG* variables, ~/.pgpass)" })
        // An empty variable counts as unset (a blank line of an EnvironmentFile or a Secret), as for the proxy.
        let apiURLVariable = environment["POSTMAN_API_URL"].flatMap { $0.isEmpty ? nil : $0 }
        for (value, name) in [(flags.apiURL, "--api-url"), (apiURLVariable, "POSTMAN_API_URL")] {
            // Checked as the config file's is: a typo used to open a run, back off for two minutes and exit 69.
            if let value, !isHTTPURL(value) {
                throw JobError(.usage, "\(name): '\(value)' is not an http(s) URL with a host (Postman's is \(defaultAPIURL))")
            }
        }
        let apiURL = pick(
            "api_url", flag: flags.apiURL, env: apiURLVariable, file: config?.apiURL, default: defaultAPIURL, show: { $0 })

        // Positive, as the file's max_age: 0 selected nothing and said nothing.
        let maxAgeFlag = try flags.maxAge.map { try durationFlag($0, option: "--max-age", allowZero: false) }
        let maxAge = pick(
            "max_age", flag: maxAgeFlag, file: config?.maxAge, default: SettingDefaults.maxAge, show: formatDuration)
        let pollFlag = try flags.pollTimeout.map { try durationFlag($0, option: "--poll-timeout", allowZero: false) }
        let pollTimeout = pick(
            "poll_timeout", flag: pollFlag, file: config?.pollTimeout, default: SettingDefaults.pollTimeout, show: formatDuration)
        if let rate = flags.rateLimit, rate < 1 { throw JobError(.usage, "--rate-limit must be at least 1, not \(rate)") }
        if let rate = flags.rateLimit, rate > maxRateLimit { throw JobError(.usage, "--rate-limit " + rateLimitTooHigh(rate)) }
        let rateLimit = pick(
            "rate_limit", flag: flags.rateLimit, file: config?.rateLimit, default: SettingDefaults.rateLimit,
            show: { "\($0) requests/s per campaign" })
        if let limit = flags.limit, limit < 0 { throw JobError(.usage, "--limit must not be negative, not \(limit)") }
        let limit = pick(
            "limit", flag: flags.limit.map { Optional($0) }, file: config?.limit.map { Optional($0) }, default: nil as Int?,
            show: { $0.map(String.init) ?? "none" })
        let wholeBatch = pick(
            "whole_batch", flag: flags.wholeBatch, file: config?.wholeBatch, default: true,
            show: { $0 ? "on: a batch whose retryable members are exactly the selected ones goes in one call" : "off" })
        let requestTimeout = pick(
            "request_timeout", flag: Duration?.none, file: config?.requestTimeout, default: SettingDefaults.requestTimeout,
            show: formatDuration)

        // Per-campaign rates: a flag wins over the file for its campaign.
        var campaignRates: [String: Int] = [:]
        for (id, campaign) in config?.campaigns ?? [:] {
            if let rate = campaign.rateLimit { campaignRates[id] = rate }
        }
        var rateSources: [String: SettingSource] = campaignRates.mapValues { _ in .file }
        for spec in flags.campaignRates {
            let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, let tps = Int(parts[1]), tps > 0 else {
                throw JobError(.usage, "--campaign-rate: '\(spec)' is not ID=TPS with TPS at least 1")
            }
            guard tps <= maxRateLimit else { throw JobError(.usage, "--campaign-rate \(parts[0]): " + rateLimitTooHigh(tps)) }
            campaignRates[parts[0]] = tps
            rateSources[parts[0]] = .flag
        }
        for id in campaignRates.keys.sorted() {
            shown.append(
                ShownSetting(name: "rate_limit[\(id)]", value: "\(campaignRates[id]!) requests/s", source: rateSources[id]!))
        }

        let table = pick(
            "table", flag: AgencyTable?.none, file: config?.table, default: AgencyTable.reference, show: describeTable)
        let otpCampaigns = pick(
            "otp.campaigns", flag: [String]?.none, file: config?.otpCampaigns, default: [],
            show: { $0.isEmpty ? "none" : $0.joined(separator: ", ") })
        let policy = pick(
            "errors", flag: ErrorPolicy?.none, file: config?.errorPolicy, default: ErrorPolicy.default,
            show: {
                "permanent: \($0.permanent.sorted().joined(separator: ", ")); retryable: \($0.retryable.sorted().joined(separator: ", ")), NULL; "
                    + "unknown codes: \($0.retryUnknown ? "retry" : "skip")"
            })
        let quietHours = pick(
            "quiet_hours", flag: QuietHours??.none, file: config?.quietHours.map { Optional($0) }, default: nil,
            show: { $0.map { "\($0)" } ?? "none" })
        let cost = pick(
            "cost", flag: CostSettings?.none, file: config?.cost, default: CostSettings(),
            show: {
                "SGD \($0.localPerSegment) local, \($0.foreignPerSegment) foreign per segment, \($0.segmentsPerMessage) segment(s), GST \($0.gstRate)"
            })

        // API keys: a variable named by the file for its campaign, else POSTMAN_API_KEY_<ID>, else POSTMAN_API_KEY.
        var keyVariables: [String: String] = [:]
        for (id, campaign) in config?.campaigns ?? [:] {
            if let variable = campaign.apiKeyVariable { keyVariables[id] = variable }
        }
        let apiKeys = APIKeys(environment: environment, campaignVariables: keyVariables)
        shown.append(
            contentsOf: apiKeys.shown(campaigns: Set(keyVariables.keys).union(flags.campaigns)).map {
                ShownSetting(name: "api_key[\($0.campaign)]", value: $0.text, source: .environment)
            })

        let network = try resolveNetwork(flags, environment: environment, config: config, apiURL: apiURL, shown: &shown)

        // A window or a campaign that can select nothing is a typo, not a quiet night.
        let since = try flags.since.map { try parseTime($0, option: "--since") }
        let until = try flags.until.map { try parseTime($0, option: "--until") }
        if let since, let until, since >= until {
            throw JobError(.usage, "--since \(flags.since!) is not before --until \(flags.until!): the window holds no row")
        }
        if flags.campaigns.contains(where: { $0.isEmpty }) {
            throw JobError(.usage, "--campaign: an empty campaign id (check the variable that fills it)")
        }
        let scope = RunScope(
            campaigns: flags.campaigns, since: since, until: until, maxAgeSeconds: maxAge.seconds, limit: limit)
        var settings = RunSettings(
            scope: scope, table: table, rules: SelectionRules(otpCampaigns: Set(otpCampaigns), errorPolicy: policy),
            apiURL: apiURL, apiKeys: apiKeys, defaultRateLimit: rateLimit, campaignRateLimits: campaignRates,
            pollTimeout: pollTimeout, requestTimeout: requestTimeout, quietHours: quietHours, wallClock: clock,
            network: network)
        settings.wholeBatchRetries = wholeBatch
        return ResolvedSettings(run: settings, databaseURL: databaseURL, config: config, shown: shown, cost: cost)
    }

    /// The proxy and the CA file (docs/network.md). The proxy follows the API URL's scheme:
    /// `https_proxy` / `HTTPS_PROXY` for https (Postman), `http_proxy` / `HTTP_PROXY` for http (a
    /// simulator), else `[postman] proxy`; `no_proxy` / `NO_PROXY`, else `[postman] no_proxy`; the CA
    /// file from `--ca-file`, else `SSL_CERT_FILE`, else `[postman] ca_file`. Empty values count as unset.
    static func resolveNetwork(
        _ flags: CommandLineValues, environment: [String: String], config: ConfigFile?, apiURL: String,
        shown: inout [ShownSetting]
    ) throws -> NetworkSettings {
        func env(_ names: [String]) -> (name: String, value: String)? {
            for name in names {
                if let value = environment[name], !value.trimmingCharacters(in: .whitespaces).isEmpty { return (name, value) }
            }
            return nil
        }
        let https = URL(string: apiURL)?.scheme?.lowercased() != "http"
        // CONTRACT.md section 5 names HTTPS_PROXY as the proxy to reach Postman: an http URL (a simulator)
        // takes HTTP_PROXY when one is set, as curl does, else that same HTTPS proxy.
        let proxyVariables = https ? ["https_proxy", "HTTPS_PROXY"] : ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"]
        var proxy: ProxySettings?
        do {
            if let (name, value) = env(proxyVariables) {
                proxy = try ProxySettings.parse(value, setting: name)
                shown.append(ShownSetting(name: "proxy", value: "\(proxy!) (from \(name))", source: .environment))
            } else if let value = config?.proxy {
                proxy = try ProxySettings.parse(value, setting: "[postman] proxy in \(config!.path)")
                shown.append(ShownSetting(name: "proxy", value: "\(proxy!)", source: .file))
            } else {
                shown.append(ShownSetting(name: "proxy", value: "none (direct)", source: .default))
            }
        } catch let error as NetworkSettingsError {
            throw JobError(.usage, error.description)
        }
        var noProxy = NoProxy("")
        if let (name, value) = env(["no_proxy", "NO_PROXY"]) {
            noProxy = NoProxy(value)
            shown.append(ShownSetting(name: "no_proxy", value: "\(noProxy) (from \(name))", source: .environment))
        } else if let value = config?.noProxy {
            noProxy = NoProxy(value)
            shown.append(ShownSetting(name: "no_proxy", value: "\(noProxy)", source: .file))
        } else if proxy != nil {
            shown.append(ShownSetting(name: "no_proxy", value: "none", source: .default))
        }
        if let proxy, let url = URL(string: apiURL), NetworkSettings(proxy: proxy, noProxy: noProxy).proxy(for: url) == nil {
            shown.append(ShownSetting(name: "proxy", value: "not used for \(url.host ?? apiURL) (no_proxy)", source: .default))
        }

        var caFiles: [String] = []
        if let path = flags.caFile.flatMap({ $0.isEmpty ? nil : $0 }) {
            caFiles = [path]
            shown.append(ShownSetting(name: "ca_file", value: path, source: .flag))
        } else if let (_, path) = env(["SSL_CERT_FILE"]) {
            caFiles = [path]
            shown.append(ShownSetting(name: "ca_file", value: "\(path) (from SSL_CERT_FILE)", source: .environment))
        } else if let path = config?.caFile {
            caFiles = [path]
            shown.append(ShownSetting(name: "ca_file", value: path, source: .file))
        } else {
            shown.append(ShownSetting(name: "ca_file", value: "none (the system's trust store only)", source: .default))
        }
        let network = NetworkSettings(proxy: proxy, noProxy: noProxy, caFiles: caFiles)
        do {
            _ = try network.loadCACertificates()
        } catch let error as NetworkSettingsError {
            throw JobError(.usage, error.description)
        }
        return network
    }

    static func durationFlag(_ text: String, option: String, allowZero: Bool) throws -> Duration {
        guard let duration = parseDuration(text), allowZero || duration > .zero else {
            throw JobError(.usage, "\(option): '\(text)' is not a \(allowZero ? "" : "positive ")duration (try 72h, 30m, 2d)")
        }
        return duration
    }

    static func parseTime(_ text: String, option: String) throws -> Date {
        if text.count == 10, let date = PGTimestamp.parse(text + "T00:00:00+08:00") { return date }
        if let date = PGTimestamp.parse(text) { return date }
        throw JobError(.usage, "\(option): '\(text)' is not a date (YYYY-MM-DD) or an ISO 8601 time with an offset")
    }

    /// `72h`, `30m`, `45s`: how `config show` and the command-line help write a duration.
    public static func formatDuration(_ duration: Duration) -> String {
        let seconds = Int(duration.seconds.rounded())
        if seconds % 3600 == 0 { return "\(seconds / 3600)h" }
        if seconds % 60 == 0 { return "\(seconds / 60)m" }
        return "\(seconds)s"
    }

    static func describeTable(_ t: AgencyTable) -> String {
        "\(t.displayName) (key \(t.key), message_id \(t.messageId), campaign_id \(t.campaignId), batch_id \(t.batchId ?? "none"), "
            + "recipient \(t.recipient), otp \(t.isOtp ?? "none"), status \(t.status), retry_count \(t.retryCount), "
            + "error_code \(t.errorCode), created_at \(t.createdAt), updated_at \(t.updatedAt))"
    }

    /// A database URL or conninfo with any password replaced, for display.
    public static func redactedDatabaseURL(_ url: String) -> String {
        if let components = URLComponents(string: url), components.scheme?.hasPrefix("postgres") == true {
            var copy = components
            if copy.password != nil { copy.password = "*****" }
            var text = copy.string ?? url
            // A password passed as a query parameter.
            if let items = copy.queryItems, items.contains(where: { $0.name == "password" }) {
                copy.queryItems = items.map { $0.name == "password" ? URLQueryItem(name: "password", value: "*****") : $0 }
                text = copy.string ?? text
            }
            return text
        }
        // conninfo: key=value pairs
        return url.split(separator: " ").map { pair in
            pair.lowercased().hasPrefix("password=") ? "password=*****" : String(pair)
        }.joined(separator: " ")
    }
}
