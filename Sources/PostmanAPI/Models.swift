import Foundation

/// One send attempt of a message, from `attempts[]` (single GET, campaign list) or `messageAttempts[]` (batch list).
public struct PostmanAttempt: Sendable, Equatable {
    public var status: String
    public var createdAt: Date?
    public var errorType: String?
    public var errorCode: String?

    public init(status: String, createdAt: Date? = nil, errorType: String? = nil, errorCode: String? = nil) {
        self.status = status
        self.createdAt = createdAt
        self.errorType = errorType
        self.errorCode = errorCode
    }
}

/// An entry of a message's `batches` array.
public struct PostmanBatchRef: Sendable, Equatable {
    public var id: String
    public var status: String?

    public init(id: String, status: String? = nil) {
        self.id = id
        self.status = status
    }
}

/// The parts of Postman's message object the retry job needs. Unknown fields are ignored.
public struct PostmanMessage: Sendable, Equatable {
    public var id: String
    public var campaignId: String?
    public var recipient: String?
    public var latestStatus: String
    public var createdAt: Date?
    public var updatedAt: Date?
    /// nil when the response had neither `attempts` nor `messageAttempts`.
    public var attempts: [PostmanAttempt]?
    /// From `numAttempts` when present (batch-messages list).
    public var numAttempts: Int?
    public var batches: [PostmanBatchRef]

    public init(
        id: String, campaignId: String? = nil, recipient: String? = nil, latestStatus: String,
        createdAt: Date? = nil, updatedAt: Date? = nil, attempts: [PostmanAttempt]? = nil,
        numAttempts: Int? = nil, batches: [PostmanBatchRef] = []
    ) {
        self.id = id
        self.campaignId = campaignId
        self.recipient = recipient
        self.latestStatus = latestStatus
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.attempts = attempts
        self.numAttempts = numAttempts
        self.batches = batches
    }

    /// Number of attempts Postman shows: `attempts.count`, else `numAttempts`; nil when both are given and
    /// disagree (an item of the history unreadable, or left out): a count that may be short must never
    /// witness a retry (it would take a retry that landed for one that did not, and send another).
    public var attemptCount: Int? {
        if let attempts {
            if let numAttempts, numAttempts != attempts.count { return nil }
            return attempts.count
        }
        return numAttempts
    }

    /// Postman's retries: every attempt after the first (never below 0).
    public var retriesUsed: Int? {
        attemptCount.map { max(0, $0 - 1) }
    }

    /// Error code of the newest attempt by `createdAt`, nil unless that attempt failed.
    /// The array order is not trusted; attempts without a timestamp count as older than dated ones,
    /// and among equals the earlier array entry wins (Postman's examples list newest first).
    public var newestErrorCode: String? {
        guard let newest = newestAttempt, newest.status == "failure" else { return nil }
        return newest.errorCode
    }

    /// The newest attempt by `createdAt` (see `newestErrorCode` for the tie rules).
    public var newestAttempt: PostmanAttempt? {
        guard let attempts, var best = attempts.first else { return nil }
        for attempt in attempts.dropFirst() {
            switch (attempt.createdAt, best.createdAt) {
            case (let a?, let b?) where a > b: best = attempt
            case (.some, nil): best = attempt
            default: break
            }
        }
        return best
    }
}

/// One page of a list endpoint.
public struct PostmanPage: Sendable {
    public var messages: [PostmanMessage]
    public var hasNextPage: Bool
    public var endCursor: String?
    public var hasPreviousPage: Bool
    public var startCursor: String?
    /// Items without an `id` or a `latestStatus`: skipped, so one bad item does not cost the whole page.
    public var skippedItems: Int
    /// The ids of the items the caller did not want decoded whole (`fullyDecoding:`), in page order.
    public var otherIds: [String]

    public init(
        messages: [PostmanMessage], hasNextPage: Bool, endCursor: String?,
        hasPreviousPage: Bool = false, startCursor: String? = nil, skippedItems: Int = 0, otherIds: [String] = []
    ) {
        self.messages = messages
        self.skippedItems = skippedItems
        self.otherIds = otherIds
        self.hasNextPage = hasNextPage
        self.endCursor = endCursor
        self.hasPreviousPage = hasPreviousPage
        self.startCursor = startCursor
    }
}

// MARK: - Tolerant decoding from JSONSerialization output

enum Decode {
    static func object(_ data: Data) -> [String: Any]? {
        guard !data.isEmpty, let value = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) else {
            return nil
        }
        return value as? [String: Any]
    }

    static func string(_ value: Any?) -> String? {
        switch value {
        case let s as String: return s
        case let n as NSNumber: return n.stringValue  // `recipient` is "numeric" on one legacy page
        default: return nil
        }
    }

    static func int(_ value: Any?) -> Int? {
        switch value {
        case let n as NSNumber: return n.intValue
        case let s as String: return Int(s.trimmingCharacters(in: .whitespaces))
        default: return nil
        }
    }

    static func bool(_ value: Any?) -> Bool? {
        switch value {
        case let b as Bool: return b
        case let s as String: return s == "true" ? true : (s == "false" ? false : nil)
        default: return nil
        }
    }

    static func date(_ value: Any?) -> Date? {
        string(value).flatMap(ISO8601.parse)
    }

    static func attempt(_ value: Any?) -> PostmanAttempt? {
        guard let dict = value as? [String: Any] else { return nil }
        // Single GET: error: {type, code}; batch list: flat errorType / errorCode. Accept both everywhere.
        let error = dict["error"] as? [String: Any]
        return PostmanAttempt(
            status: string(dict["status"]) ?? "",
            createdAt: date(dict["createdAt"]),
            errorType: string(error?["type"]) ?? nonEmpty(string(dict["errorType"])),
            errorCode: string(error?["code"]) ?? nonEmpty(string(dict["errorCode"]))
        )
    }

    private static func nonEmpty(_ s: String?) -> String? {
        guard let s, !s.isEmpty else { return nil }
        return s
    }

    static func message(_ value: Any?) -> PostmanMessage? {
        guard let dict = value as? [String: Any],
            let id = string(dict["id"]),
            let latestStatus = string(dict["latestStatus"])
        else { return nil }
        var attempts: [PostmanAttempt]?
        if let list = (dict["attempts"] as? [Any]) ?? (dict["messageAttempts"] as? [Any]) {
            attempts = list.compactMap(attempt)
        }
        let batches = (dict["batches"] as? [Any] ?? []).compactMap { item -> PostmanBatchRef? in
            guard let b = item as? [String: Any], let id = string(b["id"]) else { return nil }
            return PostmanBatchRef(id: id, status: string(b["status"]))
        }
        return PostmanMessage(
            id: id,
            campaignId: string(dict["campaignId"]),
            recipient: string(dict["recipient"]),
            latestStatus: latestStatus,
            createdAt: date(dict["createdAt"]),
            updatedAt: date(dict["updatedAt"]),
            attempts: attempts,
            numAttempts: int(dict["numAttempts"]),
            batches: batches
        )
    }

    static func page(_ dict: [String: Any]) -> PostmanPage? {
        guard let data = dict["data"] as? [Any] else { return nil }
        var messages: [PostmanMessage] = []
        messages.reserveCapacity(data.count)
        var skipped = 0
        for item in data {
            guard let message = message(item) else {
                skipped += 1
                continue
            }
            messages.append(message)
        }
        let pageData = dict["pageData"] as? [String: Any]
        return PostmanPage(
            messages: messages,
            hasNextPage: bool(pageData?["hasNextPage"]) ?? false,
            endCursor: string(pageData?["endCursor"]),
            hasPreviousPage: bool(pageData?["hasPreviousPage"]) ?? false,
            startCursor: string(pageData?["startCursor"]),
            skippedItems: skipped
        )
    }
}
