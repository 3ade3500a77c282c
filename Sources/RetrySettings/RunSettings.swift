import Foundation
import PostmanAPI
import RetryCore

/// Which rows a run looks at (CONTRACT.md section 3). Stored with the run, so a resumed run keeps
/// the scope it started with.
public struct RunScope: Sendable, Codable, Equatable {
    public var campaigns: [String]
    public var since: Date?
    public var until: Date?
    public var maxAgeSeconds: Double
    public var limit: Int?

    public init(
        campaigns: [String] = [], since: Date? = nil, until: Date? = nil, maxAgeSeconds: Double = SettingDefaults.maxAge.seconds,
        limit: Int? = nil
    ) {
        self.campaigns = campaigns
        self.since = since
        self.until = until
        self.maxAgeSeconds = maxAgeSeconds
        self.limit = limit
    }

    /// The lower bound on created_at: the later of `since` and now minus `max-age`.
    public func lowerBound(now: Date) -> Date {
        let byAge = now.addingTimeInterval(-maxAgeSeconds)
        guard let since else { return byAge }
        return max(since, byAge)
    }
}

/// Everything a run needs beyond its scope.
public struct RunSettings: Sendable {
    public var scope: RunScope
    public var table: AgencyTable
    public var rules: SelectionRules
    public var apiURL: String
    /// API keys by campaign id (resolved from the environment; never logged).
    public var apiKeys: APIKeys
    public var defaultRateLimit: Int
    public var campaignRateLimits: [String: Int]
    public var pollTimeout: Duration
    public var requestTimeout: Duration
    /// First poll of a retried message this long after its retry was accepted; later polls back off.
    public var firstPollDelay: Duration
    public var maxPollInterval: Duration
    /// Intents committed per wave, as a multiple of the campaign's rate (one second of calls by default).
    public var waveSeconds: Double
    /// Selected messages a campaign worker reads from the journal at a time (it holds up to about one and a
    /// half chunks of lifecycles; a whole-batch retry covers the members of one chunk).
    public var journalChunk: Int = SettingDefaults.journalChunk
    /// Give up on Postman (exit 69) after this long without a successful answer from it.
    public var unreachableAfter: Duration
    /// Messages retried but not final are polled by later runs until this long after the retry.
    public var neverFinalAfter: Duration
    /// No retry is sent inside these local hours; polling goes on (config file `[quiet_hours]`).
    public var quietHours: QuietHours?
    /// The wall clock quiet hours are judged by (a test may move it).
    public var wallClock: @Sendable () -> Date
    /// One `POST …/batch/{id}/retry` for a batch whose retryable members are exactly the run's
    /// (`WholeBatch.decide`); off: every member by its own retry (`--no-whole-batch`).
    public var wholeBatchRetries = true
    /// How Postman is reached: a proxy (HTTPS_PROXY, NO_PROXY) and extra CA certificates (--ca-file).
    public var network: NetworkSettings

    public init(
        scope: RunScope = RunScope(), table: AgencyTable = .reference, rules: SelectionRules = SelectionRules(),
        apiURL: String = SettingDefaults.apiURL, apiKeys: APIKeys = APIKeys(environment: [:]),
        defaultRateLimit: Int = SettingDefaults.rateLimit, campaignRateLimits: [String: Int] = [:],
        pollTimeout: Duration = SettingDefaults.pollTimeout, requestTimeout: Duration = SettingDefaults.requestTimeout,
        firstPollDelay: Duration = SettingDefaults.firstPollDelay, maxPollInterval: Duration = SettingDefaults.maxPollInterval,
        waveSeconds: Double = SettingDefaults.waveSeconds, unreachableAfter: Duration = SettingDefaults.unreachableAfter,
        neverFinalAfter: Duration = SettingDefaults.neverFinalAfter, quietHours: QuietHours? = nil,
        wallClock: @escaping @Sendable () -> Date = { Date() }, network: NetworkSettings = .direct
    ) {
        self.scope = scope
        self.table = table
        self.rules = rules
        self.apiURL = apiURL
        self.apiKeys = apiKeys
        self.defaultRateLimit = defaultRateLimit
        self.campaignRateLimits = campaignRateLimits
        self.pollTimeout = pollTimeout
        self.requestTimeout = requestTimeout
        self.firstPollDelay = firstPollDelay
        self.maxPollInterval = maxPollInterval
        self.waveSeconds = waveSeconds
        self.unreachableAfter = unreachableAfter
        self.neverFinalAfter = neverFinalAfter
        self.quietHours = quietHours
        self.wallClock = wallClock
        self.network = network
    }

    /// True while no retry may be sent.
    public var inQuietHours: Bool { quietHours?.contains(wallClock()) ?? false }

    public func rateLimit(for campaign: String) -> Int { campaignRateLimits[campaign] ?? defaultRateLimit }
}

/// API keys, from the environment only (never a flag or a file): the variable the config file names
/// for a campaign is that campaign's only source (ids such as `a-b` and `a_b` share one
/// `POSTMAN_API_KEY_A_B`: the config is how their keys are told apart); otherwise
/// `POSTMAN_API_KEY_<CAMPAIGN>` wins for its campaign, else `POSTMAN_API_KEY`. `description` never shows a key.
public struct APIKeys: Sendable, CustomStringConvertible {
    private let environment: [String: String]
    /// Campaign id -> the environment variable the config file names for its key.
    public let campaignVariables: [String: String]

    public init(environment: [String: String], campaignVariables: [String: String] = [:]) {
        let named = Set(campaignVariables.values)
        self.environment = environment.filter { $0.key.hasPrefix("POSTMAN_API_KEY") || named.contains($0.key) }
        self.campaignVariables = campaignVariables
    }

    public func key(for campaign: String) -> String? { variable(for: campaign).flatMap { environment[$0] } }

    /// The environment variable that supplies `campaign`'s key, if one is set.
    public func variable(for campaign: String) -> String? {
        if let variable = campaignVariables[campaign] {
            return environment[variable].map { $0.isEmpty ? nil : variable } ?? nil
        }
        let own = apiKeyVariableName(campaignId: campaign)
        if let value = environment[own], !value.isEmpty { return own }
        if let shared = environment["POSTMAN_API_KEY"], !shared.isEmpty { return "POSTMAN_API_KEY" }
        return nil
    }

    /// The variables to set for `campaigns` that have no key, for an error message.
    public func variablesToSet(for campaigns: [String]) -> [String] {
        campaigns.map { campaignVariables[$0] ?? apiKeyVariableName(campaignId: $0) }
    }

    /// Where each campaign's key comes from, never the key itself (`config show`).
    public func shown(campaigns: Set<String>) -> [(campaign: String, text: String)] {
        var lines: [(String, String)] = []
        if let shared = environment["POSTMAN_API_KEY"], !shared.isEmpty {
            lines.append(("*", "POSTMAN_API_KEY is set (redacted)"))
        }
        for campaign in campaigns.sorted() {
            if let variable = variable(for: campaign) {
                lines.append((campaign, "from \(variable) (redacted)"))
            } else {
                lines.append((campaign, "MISSING: set \(variablesToSet(for: [campaign])[0])"))
            }
        }
        return lines
    }

    public var description: String { "APIKeys(\(environment.keys.sorted().joined(separator: ", ")); values redacted)" }

    /// Postman's keys say their environment (postman-v2-api.md, fact 13): `key_live_` is for production,
    /// `key_test_` for the test environment. Keys with neither prefix are used as they are.
    public static let environmentPrefixes: [(prefix: String, apiURL: String, name: String)] = [
        ("key_live_", SettingDefaults.apiURL, "production"),
        ("key_test_", SettingDefaults.testAPIURL, "test environment")
    ]

    /// Every variable holding a key (for any campaign) whose prefix names the other of Postman's two
    /// environments than `apiURL`, with what is wrong; the message names the variable, never the key.
    /// Only Postman's own URLs are checked: behind any other (a simulator, an agency's gateway to Postman)
    /// keys are used as they are, whatever they look like.
    public func environmentMismatches(apiURL: String) -> [String] {
        let url = Self.normalised(apiURL)
        guard Self.environmentPrefixes.contains(where: { $0.apiURL == url }) else { return [] }
        var problems: [String] = []
        for variable in environment.keys.sorted() {
            guard let key = environment[variable] else { continue }
            for (prefix, wantedURL, name) in Self.environmentPrefixes where key.hasPrefix(prefix) && url != wantedURL {
                problems.append(
                    "\(variable) holds a \(prefix)… key, which is for Postman's \(name) (\(wantedURL)), but the API URL is "
                        + "\(apiURL); set the matching key or --api-url / POSTMAN_API_URL")
            }
        }
        return problems
    }

    /// Throws exit 64 when a key's prefix does not match the API URL (before any call is made).
    public func requireMatchingEnvironment(apiURL: String) throws {
        let problems = environmentMismatches(apiURL: apiURL)
        guard problems.isEmpty else { throw JobError(.usage, problems.joined(separator: "; ")) }
    }

    static func normalised(_ url: String) -> String {
        var text = url.trimmingCharacters(in: .whitespaces)
        while text.hasSuffix("/") { text.removeLast() }
        guard var components = URLComponents(string: text) else { return text }
        components.scheme = components.scheme?.lowercased()
        components.host = components.host?.lowercased()
        if components.port == 443, components.scheme == "https" { components.port = nil }
        return components.string ?? text
    }
}
