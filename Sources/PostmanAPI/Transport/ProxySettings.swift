import AsyncHTTPClient
import Foundation

/// An HTTP proxy in front of Postman: `http://[user:password@]host[:port]` (port 80 when none is
/// given; a bare `host:port` means http). Requests to an https URL go through it with CONNECT, so the
/// proxy sees the host name but not the requests. `description` never shows the password.
public struct ProxySettings: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?

    public init(host: String, port: Int, username: String? = nil, password: String? = nil) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
    }

    /// Parses a proxy URL. `setting` names where it came from (`HTTPS_PROXY`, `[postman] https_proxy`)
    /// for the error, which never quotes the URL itself (it may hold a password).
    public static func parse(_ text: String, setting: String) throws -> ProxySettings {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let withScheme = trimmed.contains("://") ? trimmed : "http://" + trimmed
        guard let components = URLComponents(string: withScheme) else {
            throw NetworkSettingsError(setting: setting, problem: "is not a proxy URL (write http://[user:password@]host:port)")
        }
        guard components.scheme?.lowercased() == "http" else {
            throw NetworkSettingsError(
                setting: setting,
                problem: "the proxy scheme '\(components.scheme ?? "")' is not supported: use an http:// proxy (https "
                    + "requests go through it with CONNECT)")
        }
        guard var host = components.host, !host.isEmpty else {
            throw NetworkSettingsError(setting: setting, problem: "names no proxy host (write http://[user:password@]host:port)")
        }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if let port = components.port, !(1...65535).contains(port) {
            throw NetworkSettingsError(setting: setting, problem: "the proxy port \(port) is out of range")
        }
        let path = components.path
        guard path.isEmpty || path == "/" else {
            throw NetworkSettingsError(setting: setting, problem: "a proxy URL has no path (write http://host:port)")
        }
        return ProxySettings(
            host: host, port: components.port ?? 80, username: components.user.flatMap { $0.isEmpty ? nil : $0 },
            password: components.password)
    }

    public var description: String {
        var text = "http://"
        if let username { text += username + (password == nil ? "" : ":*****") + "@" }
        let shownHost = host.contains(":") ? "[\(host)]" : host
        return text + "\(shownHost):\(port)"
    }

    var authorization: HTTPClient.Authorization? {
        username.map { .basic(username: $0, password: password ?? "") }
    }

    /// The `Proxy-Authorization` header value, for the certificate check's own CONNECT.
    var authorizationHeader: String? {
        username.map { "Basic " + Data("\($0):\(password ?? "")".utf8).base64EncodedString() }
    }
}

/// `NO_PROXY`: hosts reached directly although a proxy is set. A comma (or space) separated list of
/// host names, domain suffixes and IP addresses, each optionally with `:port`; `example.gov.sg`
/// and `.example.gov.sg` both match that host and every host under it; `*` alone matches every host.
/// Matching ignores case; there are no other wildcards and no CIDR ranges.
public struct NoProxy: Sendable, Equatable, CustomStringConvertible {
    struct Entry: Sendable, Equatable {
        var host: String
        var port: Int?
    }

    let entries: [Entry]
    let matchesAll: Bool

    public init(_ text: String) {
        var entries: [Entry] = []
        var all = false
        for raw in text.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" }) {
            var item = raw.trimmingCharacters(in: .whitespaces).lowercased()
            if item.isEmpty { continue }
            if item == "*" {
                all = true
                continue
            }
            var port: Int?
            if item.hasPrefix("[") {
                // [v6]:port or [v6]
                if let close = item.firstIndex(of: "]") {
                    let rest = item[item.index(after: close)...]
                    if rest.hasPrefix(":") { port = Int(rest.dropFirst()) }
                    item = String(item[item.index(after: item.startIndex)..<close])
                }
            } else if item.filter({ $0 == ":" }).count == 1, let colon = item.firstIndex(of: ":") {
                port = Int(item[item.index(after: colon)...])
                item = String(item[..<colon])
            }
            if item.hasPrefix("*.") { item.removeFirst(2) }
            while item.hasPrefix(".") { item.removeFirst() }
            while item.hasSuffix(".") { item.removeLast() }
            if !item.isEmpty { entries.append(Entry(host: item, port: port)) }
        }
        self.entries = entries
        self.matchesAll = all
    }

    public var isEmpty: Bool { entries.isEmpty && !matchesAll }

    /// True when `host` (and `port`) is to be reached directly.
    public func matches(host: String, port: Int? = nil) -> Bool {
        if matchesAll { return true }
        var name = host.lowercased()
        if name.hasPrefix("["), name.hasSuffix("]") { name = String(name.dropFirst().dropLast()) }
        while name.hasSuffix(".") { name.removeLast() }
        return entries.contains { entry in
            if let wanted = entry.port, wanted != port { return false }
            return name == entry.host || name.hasSuffix("." + entry.host)
        }
    }

    public var description: String {
        (matchesAll ? ["*"] : [])
            + entries.map { entry in
                let host = entry.host.contains(":") ? "[\(entry.host)]" : entry.host
                return entry.port.map { "\(host):\($0)" } ?? host
            }.joined(separator: ",")
    }
}
