/// Every default a run's settings start from, written once (CONTRACT.md section 5 and README's
/// settings table). `RunSettings()` and `SettingsResolver` (flag > environment > config file >
/// default) both read them from here.
public enum SettingDefaults {
    /// Postman's production API (`--api-url`, `POSTMAN_API_URL`).
    public static let apiURL = "https://postman.gov.sg/api/v2"
    /// Postman's test environment, for `key_test_` keys.
    public static let testAPIURL = "https://test.postman.gov.sg/api/v2"
    /// Requests per second per campaign, every endpoint together (`--rate-limit`): Postman's default.
    public static let rateLimit = 10
    /// The highest rate limit taken, per campaign: a hundred times Postman's default of 10 requests per
    /// second (above 15 Postman asks for evidence). More is a typo, and far more would overflow the pacer.
    public static let maxRateLimit = 1000
    /// How long a retried message is polled for its outcome (`--poll-timeout`): 30 minutes.
    public static let pollTimeout: Duration = .seconds(30 * 60)
    /// Only rows younger than this are looked at (`--max-age`): 72 hours.
    public static let maxAge: Duration = .seconds(72 * 3600)
    /// One HTTP request to Postman (config file `request_timeout`).
    public static let requestTimeout: Duration = .seconds(5)
    /// First poll of a retried message this long after its retry was accepted; later polls back off.
    public static let firstPollDelay: Duration = .seconds(2)
    public static let maxPollInterval: Duration = .seconds(30)
    /// Intents committed per wave, as a multiple of the campaign's rate (one second of calls).
    public static let waveSeconds: Double = 1
    /// Selected messages a campaign worker reads from the journal at a time: large enough for an incident's
    /// batch of thousands to go whole, small enough that a million-row run stays near a small run's memory.
    public static let journalChunk = 10_000
    /// Give up on Postman (exit 69) after this long without a successful answer from it.
    public static let unreachableAfter: Duration = .seconds(120)
    /// Messages retried but not final are polled by later runs until this long after the retry (48 hours).
    public static let neverFinalAfter: Duration = .seconds(48 * 3600)
}
