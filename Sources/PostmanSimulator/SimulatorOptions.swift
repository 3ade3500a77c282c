import Logging

/// How the simulator behaves beyond its data. Defaults match CONTRACT.md §8.
public struct SimulatorOptions: Sendable {
    /// Seeds outcome draws, latencies and faults: the same seed and data give the same results.
    public var seed: UInt64 = 1
    /// Requests per sliding second per campaign when the data gives no `rate_limit`.
    public var defaultRateLimit: Int = 10
    /// Delivery latencies (drawn and scripted `@S`) are divided by this.
    public var timeScale: Double = 1
    public var faults: FaultOptions = .init()
    /// Delivery latency after an accepted retry is uniform in [latencyMin, latencyMax] seconds (before timeScale).
    public var latencyMin: Double = 0.2
    public var latencyMax: Double = 2.0
    /// Weights of the outcomes drawn for retries without an `outcomes` script; keys use the script syntax
    /// (`success`, `sent_to_telco`, `failure:<code>`, `stuck`). Normalised, so they need not add up to 1.
    public var outcomeWeights: [String: Double] = SimulatorOptions.defaultOutcomeWeights
    /// A whole-batch retry answered 201 takes effect this many seconds later (before `timeScale`); until
    /// then the batch shows `messages_enqueuing` and is not retryable. Postman documents its batch retry as
    /// behaving like Batch Send, which enqueues in the background, and its 201 as "attempted"; 0 (the
    /// default) takes effect before the answer.
    public var batchRetryDelay: Double = 0
    /// When set, 429 answers carry `Retry-After: <seconds>`.
    public var retryAfterSeconds: Int? = nil
    /// Campaigns whose every authenticated request gets 401 `invalid_ip_address_error`.
    public var ipWhitelistFailureCampaigns: Set<String> = []
    /// How those campaigns are refused: the documented 401 `invalid_ip_address_error`, or the live service's
    /// 400 `invalid_ip_address_used` (postman-v2-api.md, "What real Postman v2 clients meet", fact 10).
    public var ipRefusalAs400 = false
    /// Synthetic live traffic per campaign (requests per second, evenly spaced) that uses up the rate window
    /// like the agency's own sends would. Not recorded in the ledger.
    public var backgroundTraffic: [String: Double] = [:]
    /// Level of Hummingbird's own log (stderr).
    public var logLevel: Logger.Level = .error

    public static let defaultOutcomeWeights: [String: Double] = [
        "success": 0.70,
        "failure:recipient_unavailable": 0.10,
        "failure:routing_error": 0.04,
        "failure:message_expired": 0.04,
        "failure:delivery_unknown_error": 0.04,
        "failure:server_unknown_error": 0.03,
        "failure:recipient_invalid": 0.03,
        "failure:content_invalid": 0.02
    ]

    public init() {}
}

/// Fault rates, each a probability per Postman request (0 = never). Drawn from a generator seeded by
/// `SimulatorOptions.seed` over the order requests arrive in.
public struct FaultOptions: Sendable {
    /// 503 with an error body before doing anything (no state change).
    public var error5xxBefore: Double = 0
    /// On an accepted retry: the retry takes effect, then the answer is 500 (the lost-answer case).
    public var error5xxAfterAccept: Double = 0
    /// The answer is held back `slowResponseSeconds` (the request has already taken effect).
    public var slowResponse: Double = 0
    public var slowResponseSeconds: Double = 15
    /// The connection is closed without an answer, after the request has taken effect.
    public var dropConnection: Double = 0
    /// A 200/201 answer whose JSON body is cut in half.
    public var malformedJSON: Double = 0

    public init() {}
}
