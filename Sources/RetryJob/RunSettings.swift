import Foundation
import RetryCore

/// Which rows a run looks at (CONTRACT.md section 3). Stored with the run, so a resumed run keeps
/// the scope it started with.
public struct RunScope: Sendable, Codable, Equatable {
    public var campaigns: [String]
    public var since: Date?
    public var until: Date?
    public var maxAgeSeconds: Double
    public var limit: Int?

    public init(campaigns: [String] = [], since: Date? = nil, until: Date? = nil, maxAgeSeconds: Double = 72 * 3600, limit: Int? = nil) {
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
    /// Give up on Postman (exit 69) after this long without a successful answer from it.
    public var unreachableAfter: Duration
    /// Messages retried but not final are polled by later runs until this long after the retry.
    public var neverFinalAfter: Duration

    public init(
        scope: RunScope = RunScope(), table: AgencyTable = .reference, rules: SelectionRules = SelectionRules(),
        apiURL: String = "https://postman.gov.sg/api/v2", apiKeys: APIKeys = APIKeys(environment: [:]),
        defaultRateLimit: Int = 10, campaignRateLimits: [String: Int] = [:], pollTimeout: Duration = .seconds(1800),
        requestTimeout: Duration = .seconds(5), firstPollDelay: Duration = .seconds(2),
        maxPollInterval: Duration = .seconds(30), waveSeconds: Double = 1, unreachableAfter: Duration = .seconds(120),
        neverFinalAfter: Duration = .seconds(48 * 3600)
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
    }

    public func rateLimit(for campaign: String) -> Int { campaignRateLimits[campaign] ?? defaultRateLimit }
}

/// API keys: `POSTMAN_API_KEY_<CAMPAIGN>` wins for its campaign, else `POSTMAN_API_KEY`.
/// `description` never shows a key.
public struct APIKeys: Sendable, CustomStringConvertible {
    private let environment: [String: String]
    public init(environment: [String: String]) {
        self.environment = environment.filter { $0.key.hasPrefix("POSTMAN_API_KEY") }
    }

    public func key(for campaign: String) -> String? {
        if let own = environment[apiKeyVariableName(campaignId: campaign)], !own.isEmpty { return own }
        if let shared = environment["POSTMAN_API_KEY"], !shared.isEmpty { return shared }
        return nil
    }

    public var description: String { "APIKeys(\(environment.keys.sorted().joined(separator: ", ")); values redacted)" }
}
