// From the raw request to a route: the path's segments and the query, percent-decoded.
extension State {
    enum Route {
        case listCampaign
        case getMessage(String)
        case retryMessage(String)
        case listBatch(String)
        case retryBatch(String)
        case unknown
    }

    /// Splits the raw path into decoded segments (`%2F` stays inside its segment), with or without `/api/v2`.
    static func route(method: String, rawPath: String) -> (campaignId: String?, route: Route) {
        var parts = rawPath.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        if parts.count >= 2, parts[0] == "api", parts[1] == "v2" { parts.removeFirst(2) }
        guard parts.count >= 2, parts[0] == "campaigns", let campaign = percentDecode(parts[1]) else { return (nil, .unknown) }
        let rest = Array(parts.dropFirst(2))
        switch (method, rest.count) {
        case ("GET", 1) where rest[0] == "messages":
            return (campaign, .listCampaign)
        case ("GET", 2) where rest[0] == "messages":
            return (campaign, percentDecode(rest[1]).map(Route.getMessage) ?? .unknown)
        case ("POST", 3) where rest[0] == "messages" && rest[2] == "retry":
            return (campaign, percentDecode(rest[1]).map(Route.retryMessage) ?? .unknown)
        case ("GET", 3) where rest[0] == "batch" && rest[2] == "messages":
            return (campaign, percentDecode(rest[1]).map(Route.listBatch) ?? .unknown)
        case ("POST", 3) where rest[0] == "batch" && rest[2] == "retry":
            return (campaign, percentDecode(rest[1]).map(Route.retryBatch) ?? .unknown)
        default:
            return (campaign, .unknown)
        }
    }

    static func parseQuery(_ query: String?) -> [String: String] {
        guard let query, !query.isEmpty else { return [:] }
        var result: [String: String] = [:]
        for pair in query.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = percentDecode(String(kv[0])) else { continue }
            let value = kv.count > 1 ? (percentDecode(String(kv[1])) ?? String(kv[1])) : ""
            if result[key] == nil { result[key] = value }
        }
        return result
    }
}

/// Percent-decodes one path segment or query component; nil when the escapes are not valid UTF-8.
func percentDecode(_ s: String) -> String? {
    guard s.utf8.contains(UInt8(ascii: "%")) else { return s }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(s.utf8.count)
    var it = Array(s.utf8)[...]
    while let b = it.popFirst() {
        if b == UInt8(ascii: "%") {
            guard it.count >= 2, let hi = hexValue(it[it.startIndex]), let lo = hexValue(it[it.startIndex + 1]) else {
                return nil
            }
            bytes.append(hi << 4 | lo)
            it = it.dropFirst(2)
        } else {
            bytes.append(b)
        }
    }
    return String(validating: bytes, as: UTF8.self)
}

private func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case 48...57: return c - 48
    case 65...70: return c - 55
    case 97...102: return c - 87
    default: return nil
    }
}
