import Foundation

/// Anything other than the documented success answer of a Postman call.
///
/// Never carries the API key: messages are scrubbed of it before they are stored, and the
/// request headers are not kept at all.
public struct PostmanAPIError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Postman answered with this (non-success) status and a body we could read or not.
        case http(status: Int)
        /// No answer within the request timeout.
        case timeout
        /// The connection could not be made, or broke before a full answer arrived.
        case connection
        /// A success status (or an unexpected one) whose body was not what the endpoint documents.
        case badResponse(status: Int)
    }

    public var kind: Kind
    /// Postman's error code (`error.code`); nil for legacy `{message, statusCode}` bodies and non-JSON bodies.
    public var code: String?
    /// Postman's message, or a short description of the transport failure.
    public var message: String?
    /// `error.id`, to quote to Postman support.
    public var requestID: String?
    /// From a `Retry-After` header when present.
    public var retryAfter: Duration?
    /// True when the request may have reached Postman and been acted on
    /// (5xx, timeout after sending, connection lost after sending, unparsable body).
    public var mayHaveReachedServer: Bool
    /// 429, 5xx, timeout, connection, badResponse: worth sending again later. Other 4xx: not.
    public var isRetryable: Bool

    public init(
        kind: Kind, code: String? = nil, message: String? = nil, requestID: String? = nil,
        retryAfter: Duration? = nil, mayHaveReachedServer: Bool? = nil, isRetryable: Bool? = nil
    ) {
        self.kind = kind
        self.code = code
        self.message = message
        self.requestID = requestID
        self.retryAfter = retryAfter
        self.mayHaveReachedServer = mayHaveReachedServer ?? Self.defaultMayHaveReachedServer(kind)
        self.isRetryable = isRetryable ?? Self.defaultIsRetryable(kind)
    }

    /// HTTP status when Postman answered at all.
    public var httpStatus: Int? {
        switch kind {
        case .http(let status), .badResponse(let status): return status
        case .timeout, .connection: return nil
        }
    }

    /// Postman's error codes that refuse the credentials themselves: the API key, or the source IP the
    /// key is whitelisted for. The live service answers some of them with 400, not 401
    /// (postman-v2-api.md, fact 10), so the code decides, whatever the status.
    public static let credentialRefusalCodes: Set<String> = [
        "invalid_api_key_provided", "invalid_ip_address_error", "invalid_ip_address_used", "authentication_required"
    ]

    /// True when Postman refused the key or the source IP (CONTRACT.md section 4): a 401 or 403, or any
    /// 4xx whose error code is one of `credentialRefusalCodes`. The run must stop at once (exit 77):
    /// every further call would be refused the same way, and the refused call is not a retry.
    public var isCredentialRefusal: Bool {
        guard case .http(let status) = kind, (400..<500).contains(status) else { return false }
        if status == 401 || status == 403 { return true }
        return code.map(Self.credentialRefusalCodes.contains) ?? false
    }

    /// A 5xx that came from the edge in front of Postman rather than from Postman's own API: a
    /// Cloudflare 520–524, or any 5xx whose body is not JSON (an HTML error page). Like every 5xx it
    /// may have reached the server (`mayHaveReachedServer`), so a retry answered this way is settled
    /// by reading the message back.
    public var isEdgeError: Bool {
        guard case .http(let status) = kind, status >= 500 else { return false }
        return (520...524).contains(status) || bodyWasNotJSON
    }

    /// The error body was there but not a JSON object (an HTML page from a proxy or a CDN, plain text).
    public var bodyWasNotJSON = false

    static func defaultIsRetryable(_ kind: Kind) -> Bool {
        switch kind {
        case .http(let status): return status == 429 || status >= 500
        case .timeout, .connection, .badResponse: return true
        }
    }

    static func defaultMayHaveReachedServer(_ kind: Kind) -> Bool {
        switch kind {
        // A 4xx is a definite refusal; 5xx means the server may have done part of the work.
        case .http(let status): return status >= 500
        case .timeout, .connection, .badResponse: return true
        }
    }

    public var description: String {
        var parts: [String] = []
        switch kind {
        case .http(let status): parts.append("HTTP \(status)")
        case .timeout: parts.append("timeout")
        case .connection: parts.append("connection error")
        case .badResponse(let status): parts.append("bad response (HTTP \(status))")
        }
        if let code { parts.append("code \(code)") }
        if let message { parts.append(message) }
        if let requestID { parts.append("request id \(requestID)") }
        return "Postman API error: " + parts.joined(separator: ", ")
    }

    public var debugDescription: String {
        "PostmanAPIError(kind: \(kind), code: \(code ?? "nil"), message: \(message.map { "\"\($0)\"" } ?? "nil"), "
            + "requestID: \(requestID ?? "nil"), retryAfter: \(retryAfter.map { "\($0)" } ?? "nil"), "
            + "mayHaveReachedServer: \(mayHaveReachedServer), isRetryable: \(isRetryable))"
    }

    // MARK: - Building from a response

    /// Reads either error shape: new `{"error": {code, message, type, id}}`, legacy `{message, statusCode}`,
    /// or anything else (a proxy's HTML page), which leaves `code` nil.
    static func fromResponse(status: Int, body: Data, retryAfter: Duration?, apiKey: String) -> PostmanAPIError {
        var code: String?
        var message: String?
        var requestID: String?
        if let dict = Decode.object(body) {
            if let error = dict["error"] as? [String: Any] {
                code = Decode.string(error["code"])
                message = Decode.string(error["message"])
                requestID = Decode.string(error["id"])
            } else {
                message = Decode.string(dict["message"])
            }
        } else if !body.isEmpty {
            message = "non-JSON body: " + String(decoding: body.prefix(120), as: UTF8.self)
        }
        var error = PostmanAPIError(
            kind: .http(status: status),
            code: code,
            message: message.map { scrub($0, apiKey: apiKey) },
            requestID: requestID.map { scrub($0, apiKey: apiKey) },
            retryAfter: retryAfter
        )
        error.bodyWasNotJSON = !body.isEmpty && Decode.object(body) == nil
        if status >= 500 {
            // 520–524 and HTML pages come from the edge (Cloudflare) and carry no Postman code; the
            // request may still have reached Postman, so it is settled by a read like any 5xx.
            error.mayHaveReachedServer = true
            error.isRetryable = true
        }
        return error
    }

    /// Removes the API key from text that came from outside (a server could echo the header back).
    static func scrub(_ text: String, apiKey: String) -> String {
        guard apiKey.count >= 4 else { return text }
        return text.replacingOccurrences(of: apiKey, with: "[redacted]")
    }

    /// `Retry-After`: delay-seconds (integer or decimal) or an HTTP-date.
    static func parseRetryAfter(_ value: String?, now: Date = Date()) -> Duration? {
        guard let raw = value?.trimmingCharacters(in: .whitespaces), !raw.isEmpty else { return nil }
        if let seconds = Double(raw), seconds.isFinite, seconds >= 0 {
            return .milliseconds(Int64((seconds * 1000).rounded()))
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: raw) else { return nil }
        let delay = max(0, date.timeIntervalSince(now))
        return .milliseconds(Int64((delay * 1000).rounded()))
    }
}
