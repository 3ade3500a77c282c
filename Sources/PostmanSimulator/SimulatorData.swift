import Foundation

/// The simulator's data file (CONTRACT.md §8). Keys are snake_case exactly as the contract shows;
/// the optional extras (`created_at`, `rate_limit`, …) are documented in docs/simulator.md.
public struct SimulatorData: Codable, Sendable, Equatable {
    public struct Campaign: Codable, Sendable, Equatable {
        public var id: String
        public var apiKey: String
        /// Requests per sliding second for this campaign; wins over `--rate-limit`.
        public var rateLimit: Int?

        public init(id: String, apiKey: String, rateLimit: Int? = nil) {
            self.id = id
            self.apiKey = apiKey
            self.rateLimit = rateLimit
        }

        enum CodingKeys: String, CodingKey {
            case id
            case apiKey = "api_key"
            case rateLimit = "rate_limit"
        }
    }

    public struct Batch: Codable, Sendable, Equatable {
        public var id: String
        public var campaignId: String
        public var status: String

        public init(id: String, campaignId: String, status: String) {
            self.id = id
            self.campaignId = campaignId
            self.status = status
        }

        enum CodingKeys: String, CodingKey {
            case id
            case campaignId = "campaign_id"
            case status
        }
    }

    public struct Attempt: Codable, Sendable, Equatable {
        public var status: String
        public var errorType: String?
        public var errorCode: String?
        /// ISO 8601 with offset; absent = derived from the message's creation time.
        public var createdAt: String?

        public init(status: String, errorType: String? = nil, errorCode: String? = nil, createdAt: String? = nil) {
            self.status = status
            self.errorType = errorType
            self.errorCode = errorCode
            self.createdAt = createdAt
        }

        enum CodingKeys: String, CodingKey {
            case status
            case errorType = "error_type"
            case errorCode = "error_code"
            case createdAt = "created_at"
        }
    }

    public struct Message: Codable, Sendable, Equatable {
        public var id: String
        public var campaignId: String
        public var batchId: String?
        public var recipient: String
        public var latestStatus: String
        /// Retries already used before the simulator started (Postman's count).
        public var retries: Int
        public var attempts: [Attempt]
        /// Script of what each later accepted retry ends in; see docs/simulator.md.
        public var outcomes: [String]?
        /// Optional extra: the message's `createdAt`; default = its oldest attempt's time.
        public var createdAt: String?

        public init(
            id: String, campaignId: String, batchId: String? = nil, recipient: String, latestStatus: String,
            retries: Int = 0, attempts: [Attempt] = [], outcomes: [String]? = nil, createdAt: String? = nil
        ) {
            self.id = id
            self.campaignId = campaignId
            self.batchId = batchId
            self.recipient = recipient
            self.latestStatus = latestStatus
            self.retries = retries
            self.attempts = attempts
            self.outcomes = outcomes
            self.createdAt = createdAt
        }

        enum CodingKeys: String, CodingKey {
            case id
            case campaignId = "campaign_id"
            case batchId = "batch_id"
            case recipient
            case latestStatus = "latest_status"
            case retries
            case attempts
            case outcomes
            case createdAt = "created_at"
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            id = try c.decode(String.self, forKey: .id)
            campaignId = try c.decode(String.self, forKey: .campaignId)
            batchId = try c.decodeIfPresent(String.self, forKey: .batchId)
            recipient = try c.decode(String.self, forKey: .recipient)
            latestStatus = try c.decode(String.self, forKey: .latestStatus)
            retries = try c.decodeIfPresent(Int.self, forKey: .retries) ?? 0
            attempts = try c.decodeIfPresent([Attempt].self, forKey: .attempts) ?? []
            outcomes = try c.decodeIfPresent([String].self, forKey: .outcomes)
            createdAt = try c.decodeIfPresent(String.self, forKey: .createdAt)
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(id, forKey: .id)
            try c.encode(campaignId, forKey: .campaignId)
            try c.encode(batchId, forKey: .batchId)  // explicit null, as in the contract's example
            try c.encode(recipient, forKey: .recipient)
            try c.encode(latestStatus, forKey: .latestStatus)
            try c.encode(retries, forKey: .retries)
            try c.encode(attempts, forKey: .attempts)
            try c.encodeIfPresent(outcomes, forKey: .outcomes)
            try c.encodeIfPresent(createdAt, forKey: .createdAt)
        }
    }

    public var campaigns: [Campaign]
    public var batches: [Batch]
    public var messages: [Message]

    public init(campaigns: [Campaign] = [], batches: [Batch] = [], messages: [Message] = []) {
        self.campaigns = campaigns
        self.batches = batches
        self.messages = messages
    }

    enum CodingKeys: String, CodingKey {
        case campaigns, batches, messages
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        campaigns = try c.decodeIfPresent([Campaign].self, forKey: .campaigns) ?? []
        batches = try c.decodeIfPresent([Batch].self, forKey: .batches) ?? []
        messages = try c.decodeIfPresent([Message].self, forKey: .messages) ?? []
    }

    /// Decodes the JSON data format and checks it (unique ids, known campaigns, valid outcome scripts).
    public static func decode(from json: Data) throws -> SimulatorData {
        let data = try JSONDecoder().decode(SimulatorData.self, from: json)
        try data.validate()
        return data
    }

    /// Reads and validates a data file.
    public static func load(path: String) throws -> SimulatorData {
        try decode(from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    public func encoded(pretty: Bool = false) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys] : [.sortedKeys]
        return try encoder.encode(self)
    }

    /// Throws `SimulatorDataError` naming the first problem found.
    public func validate() throws {
        var campaignIds = Set<String>()
        for campaign in campaigns {
            guard campaignIds.insert(campaign.id).inserted else {
                throw SimulatorDataError("duplicate campaign id \(campaign.id)")
            }
            if let limit = campaign.rateLimit, limit < 1 {
                throw SimulatorDataError("campaign \(campaign.id): rate_limit must be at least 1")
            }
        }
        var batchIds = Set<String>()
        for batch in batches {
            guard batchIds.insert(batch.id).inserted else { throw SimulatorDataError("duplicate batch id \(batch.id)") }
            guard campaignIds.contains(batch.campaignId) else {
                throw SimulatorDataError("batch \(batch.id): unknown campaign_id \(batch.campaignId)")
            }
        }
        var messageIds = Set<String>()
        for message in messages {
            guard messageIds.insert(message.id).inserted else { throw SimulatorDataError("duplicate message id \(message.id)") }
            guard campaignIds.contains(message.campaignId) else {
                throw SimulatorDataError("message \(message.id): unknown campaign_id \(message.campaignId)")
            }
            guard message.retries >= 0 else { throw SimulatorDataError("message \(message.id): retries must not be negative") }
            for (index, attempt) in message.attempts.enumerated() {
                if let createdAt = attempt.createdAt, SimTime.parseMillis(createdAt) == nil {
                    throw SimulatorDataError("message \(message.id): attempts[\(index)].created_at is not ISO 8601: \(createdAt)")
                }
            }
            if let createdAt = message.createdAt, SimTime.parseMillis(createdAt) == nil {
                throw SimulatorDataError("message \(message.id): created_at is not ISO 8601: \(createdAt)")
            }
            for script in message.outcomes ?? [] {
                guard ScriptedOutcome(script) != nil else {
                    throw SimulatorDataError("message \(message.id): bad outcome \"\(script)\"")
                }
            }
            if message.outcomes?.isEmpty == true {
                throw SimulatorDataError("message \(message.id): outcomes must not be empty (leave it out instead)")
            }
        }
    }
}

public struct SimulatorDataError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
