/// What the simulator saw (CONTRACT.md §8). Served by `GET /_sim/ledger` and written by `--ledger`.
public struct SimulatorLedger: Codable, Sendable, Equatable {
    public struct Request: Codable, Sendable, Equatable {
        /// Seconds since the simulator started.
        public var t: Double
        /// The campaign the path names; nil for paths outside `/campaigns/{id}/…`.
        public var campaignId: String?
        public var method: String
        /// The path as received (still percent-encoded), without the query string.
        public var path: String
        /// HTTP status answered; 0 when the connection was dropped without an answer.
        public var status: Int

        public init(t: Double, campaignId: String?, method: String, path: String, status: Int) {
            self.t = t
            self.campaignId = campaignId
            self.method = method
            self.path = path
            self.status = status
        }

        enum CodingKeys: String, CodingKey {
            case t
            case campaignId = "campaign_id"
            case method, path, status
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(t, forKey: .t)
            try c.encode(campaignId, forKey: .campaignId)  // null, not absent
            try c.encode(method, forKey: .method)
            try c.encode(path, forKey: .path)
            try c.encode(status, forKey: .status)
        }
    }

    public var requests: [Request]
    /// Retries accepted (single or through a batch retry) per message id, since the last load/reset.
    public var acceptedRetries: [String: Int]
    /// Requests answered 429.
    public var rateLimited: Int
    /// Per campaign: most requests that arrived (any answer) inside one sliding 1-second window.
    public var maxRequestsIn1s: [String: Int]

    public init(
        requests: [Request] = [], acceptedRetries: [String: Int] = [:], rateLimited: Int = 0, maxRequestsIn1s: [String: Int] = [:]
    ) {
        self.requests = requests
        self.acceptedRetries = acceptedRetries
        self.rateLimited = rateLimited
        self.maxRequestsIn1s = maxRequestsIn1s
    }

    enum CodingKeys: String, CodingKey {
        case requests
        case acceptedRetries = "accepted_retries"
        case rateLimited = "rate_limited"
        case maxRequestsIn1s = "max_requests_in_1s"
    }
}
