import Foundation

// The list endpoints (a campaign's messages, a batch's): pages in (createdAt, id) order, with Postman's cursors.
extension State {
    mutating func list(ids: [String], query: String?, batchStyle: Bool, t: Double) -> SimResponse {
        let params = Self.parseQuery(query)
        var limit = 100  // `limit` is optional in the new docs; the legacy 1...1000 bound is enforced
        if let raw = params["limit"] {
            guard let l = Int(raw), (1...1000).contains(l) else {
                return error(
                    400, "parameter_invalid", "limit must be an integer between 1 and 1000", type: "invalid_request_error")
            }
            limit = l
        }
        var ids = ids
        if let search = params["search"], !search.isEmpty {
            ids = ids.filter { messages[$0]!.recipient.contains(search) }
        }
        let all = messages
        let keyOf = { (id: String) -> (Int64, String) in (all[id]!.createdAtMs, id) }
        var start = 0
        var end = min(ids.count, limit)
        if let after = params["after"] {
            guard let key = Self.decodeCursor(after) else {
                return error(400, "parameter_invalid", "after is not a valid cursor", type: "invalid_request_error")
            }
            start = Self.lowerBound(ids, count: ids.count) { keyOf($0) <= key }
            end = min(ids.count, start + limit)
        } else if let before = params["before"] {
            guard let key = Self.decodeCursor(before) else {
                return error(400, "parameter_invalid", "before is not a valid cursor", type: "invalid_request_error")
            }
            end = Self.lowerBound(ids, count: ids.count) { keyOf($0) < key }
            start = max(0, end - limit)
        }
        let page = ids[start..<end]
        let items = page.map { render(messages[$0]!, t: t, batchStyle: batchStyle, forceCreated: false) }
        let first = page.first.map { Self.encodeCursor(messages[$0]!) }
        let last = page.last.map { Self.encodeCursor(messages[$0]!) }
        let body = JSON.object([
            ("data", .array(items)),
            (
                "pageData",
                .object([
                    ("hasNextPage", .bool(end < ids.count)),
                    ("hasPreviousPage", .bool(start > 0)),
                    ("startCursor", .optional(first)),
                    ("endCursor", .optional(last))
                ])
            )
        ])
        return SimResponse(status: 200, body: body.serialized())
    }

    /// First index whose element does not satisfy `isBefore` (elements satisfying it form a prefix).
    static func lowerBound(_ ids: [String], count: Int, isBefore: (String) -> Bool) -> Int {
        var lo = 0
        var hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if isBefore(ids[mid]) { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Like Postman's: base64 of the JSON pair `[createdAt, id]`.
    static func encodeCursor(_ m: MessageState) -> String {
        let json = JSON.array([.string(SimTime.format(millis: m.createdAtMs)), .string(m.id)]).serialized()
        return Data(json.utf8).base64EncodedString()
    }

    static func decodeCursor(_ cursor: String) -> (Int64, String)? {
        // A `+` sent unencoded in a query may have turned into a space on the way.
        let fixed = cursor.replacingOccurrences(of: " ", with: "+")
        guard let data = Data(base64Encoded: fixed),
            let pair = try? JSONSerialization.jsonObject(with: data) as? [Any], pair.count == 2,
            let created = pair[0] as? String, let id = pair[1] as? String,
            let ms = SimTime.parseMillis(created)
        else { return nil }
        return (ms, id)
    }
}
