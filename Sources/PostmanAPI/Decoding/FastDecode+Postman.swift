// Postman's shapes, read as `Decode` reads them: an attempt, a message, a list page.
extension FastDecode.Reader {
    /// `Decode.attempt`: an item that is not an object is dropped (nil).
    mutating func attempt() throws -> PostmanAttempt? {
        guard atObject else {
            try skipValue()
            return nil
        }
        var seen: UInt32 = 0
        var status: String?
        var createdAt: String?
        var errorType: String?
        var errorCode: String?
        var flatType: String?
        var flatCode: String?
        try object { reader, key in
            switch key {
            case "status", "createdAt", "error", "errorType", "errorCode":
                try Self.once(&seen, key)
            default: break
            }
            switch key {
            case "status": status = try reader.optionalString()
            case "createdAt": createdAt = try reader.optionalString()
            case "errorType": flatType = try reader.optionalString()
            case "errorCode": flatCode = try reader.optionalString()
            case "error":
                if reader.isNull() { return }
                // `Decode` reads `error` only when it is an object; anything else: unsure.
                guard reader.atObject else { throw Unsure() }
                var inner: UInt32 = 0
                try reader.object { reader, key in
                    switch key {
                    case "type":
                        try Self.once(&inner, key)
                        errorType = try reader.optionalString()
                    case "code":
                        try Self.once(&inner, key)
                        errorCode = try reader.optionalString()
                    default: try reader.skipValue()
                    }
                }
            default: try reader.skipValue()
            }
        }
        return PostmanAttempt(
            status: status ?? "", createdAt: createdAt.flatMap(ISO8601.parse),
            errorType: errorType ?? Self.nonEmpty(flatType), errorCode: errorCode ?? Self.nonEmpty(flatCode))
    }

    /// The keys `Decode` reads, each a bit of a `seen` mask: a key that comes twice makes the reader unsure.
    private static let wantedKeys = [
        "id", "latestStatus", "campaignId", "recipient", "createdAt", "updatedAt", "attempts", "messageAttempts",
        "numAttempts", "batches", "status", "error", "errorType", "errorCode", "type", "code", "data", "pageData",
        "hasNextPage", "endCursor", "hasPreviousPage", "startCursor"
    ]

    private static func once(_ seen: inout UInt32, _ key: String) throws {
        guard let index = wantedKeys.firstIndex(of: key) else { throw Unsure() }
        let bit = UInt32(1) << UInt32(index)
        guard seen & bit == 0 else { throw Unsure() }
        seen |= bit
    }

    private static func nonEmpty(_ s: String?) -> String? {
        guard let s, !s.isEmpty else { return nil }
        return s
    }

    /// `Decode.message` for an object here: nil when it lacks `id` or `latestStatus` (skipped by a page).
    mutating func message() throws -> PostmanMessage? {
        var seen: UInt32 = 0
        var id: String?
        var latestStatus: String?
        var campaignId: String?
        var recipient: String?
        var createdAt: String?
        var updatedAt: String?
        var attempts: [PostmanAttempt]?
        var messageAttempts: [PostmanAttempt]?
        var numAttempts: Int?
        var batches: [PostmanBatchRef] = []
        try object { reader, key in
            switch key {
            case "id", "latestStatus", "campaignId", "recipient", "createdAt", "updatedAt", "attempts",
                "messageAttempts", "numAttempts", "batches":
                try Self.once(&seen, key)
            default: break
            }
            switch key {
            case "id": id = try reader.optionalString()
            case "latestStatus": latestStatus = try reader.optionalString()
            case "campaignId": campaignId = try reader.optionalString()
            case "recipient": recipient = try reader.optionalString()
            case "createdAt": createdAt = try reader.optionalString()
            case "updatedAt": updatedAt = try reader.optionalString()
            case "numAttempts": numAttempts = try reader.optionalInt()
            case "attempts", "messageAttempts":
                if reader.isNull() { return }
                guard reader.atArray else { throw Unsure() }
                var list: [PostmanAttempt] = []
                try reader.array { reader in
                    if let attempt = try reader.attempt() { list.append(attempt) }
                }
                if key == "attempts" { attempts = list } else { messageAttempts = list }
            case "batches":
                if reader.isNull() { return }
                guard reader.atArray else { throw Unsure() }
                try reader.array { reader in
                    guard reader.atObject else {
                        try reader.skipValue()
                        return
                    }
                    var batchId: String?
                    var status: String?
                    var inner: UInt32 = 0
                    try reader.object { reader, key in
                        switch key {
                        case "id":
                            try Self.once(&inner, key)
                            batchId = try reader.optionalString()
                        case "status":
                            try Self.once(&inner, key)
                            status = try reader.optionalString()
                        default: try reader.skipValue()
                        }
                    }
                    if let batchId { batches.append(PostmanBatchRef(id: batchId, status: status)) }
                }
            default: try reader.skipValue()
            }
        }
        guard let id, let latestStatus else { return nil }
        return PostmanMessage(
            id: id, campaignId: campaignId, recipient: recipient, latestStatus: latestStatus,
            createdAt: createdAt.flatMap(ISO8601.parse), updatedAt: updatedAt.flatMap(ISO8601.parse),
            attempts: attempts ?? messageAttempts, numAttempts: numAttempts, batches: batches)
    }

    /// The id of the message object here when `wanted` says no to it; the object is then skipped without
    /// building its values (issue 17: most items of a sweep's page are not wanted). Otherwise nil, and the
    /// reader is back at the object's start for `message()` (also for an object that lacks a string `id` or
    /// `latestStatus`, which `message()` skips as `Decode` does).
    mutating func unwantedId(_ wanted: (String) -> Bool) throws -> String? {
        let start = i
        var seen: UInt32 = 0
        var id: String?
        var hasStatus = false
        try objectWithRawKeys { reader, key in
            if Self.key(key, is: "id") {
                try Self.once(&seen, "id")
                id = try reader.optionalString()
            } else if Self.key(key, is: "latestStatus") {
                try Self.once(&seen, "latestStatus")
                hasStatus = try reader.optionalString() != nil
            } else {
                try reader.skipValue()
            }
        }
        if let id, hasStatus, !wanted(id) { return id }
        i = start
        return nil
    }

    /// `Decode.page` for the object here: nil when it has no `data` array. With `wanted`, only the items it
    /// says yes to are decoded whole; the others give only their id (`PostmanPage.otherIds`).
    mutating func page(wanted: ((String) -> Bool)? = nil) throws -> PostmanPage? {
        var seen: UInt32 = 0
        var messages: [PostmanMessage]?
        var others: [String] = []
        var skipped = 0
        var hasNextPage: Bool?
        var endCursor: String?
        var hasPreviousPage: Bool?
        var startCursor: String?
        try object { reader, key in
            switch key {
            case "data", "pageData":
                try Self.once(&seen, key)
            default: break
            }
            switch key {
            case "data":
                guard reader.atArray else { throw Unsure() }
                var list: [PostmanMessage] = []
                list.reserveCapacity(1000)
                try reader.array { reader in
                    guard reader.atObject else {
                        try reader.skipValue()
                        skipped += 1
                        return
                    }
                    if let wanted, let id = try reader.unwantedId(wanted) {
                        others.append(id)
                        return
                    }
                    if let message = try reader.message() { list.append(message) } else { skipped += 1 }
                }
                messages = list
            case "pageData":
                if reader.isNull() { return }
                guard reader.atObject else { throw Unsure() }
                var inner: UInt32 = 0
                try reader.object { reader, key in
                    switch key {
                    case "hasNextPage", "endCursor", "hasPreviousPage", "startCursor":
                        try Self.once(&inner, key)
                    default: break
                    }
                    switch key {
                    case "hasNextPage": hasNextPage = try reader.optionalBool()
                    case "hasPreviousPage": hasPreviousPage = try reader.optionalBool()
                    case "endCursor": endCursor = try reader.optionalString()
                    case "startCursor": startCursor = try reader.optionalString()
                    default: try reader.skipValue()
                    }
                }
            default: try reader.skipValue()
            }
        }
        guard let messages else { return nil }
        return PostmanPage(
            messages: messages, hasNextPage: hasNextPage ?? false, endCursor: endCursor,
            hasPreviousPage: hasPreviousPage ?? false, startCursor: startCursor, skippedItems: skipped, otherIds: others)
    }
}
