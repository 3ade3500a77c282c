import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix
import NIOSSL

/// What a `POST …/messages/{id}/retry` answered 201 with.
public enum RetryCallResult: Sendable {
    /// Postman accepted the retry. The message is nil when the 201 body could not be parsed:
    /// the retry still counts as accepted.
    case accepted(PostmanMessage?)
}

/// Typed client for the Postman v2 endpoints the retry job uses.
///
/// One `HTTPClient` is shared by all calls so connections are reused. The API key is passed per call
/// (Postman issues keys per campaign) and only ever goes into the `Authorization` header.
public struct PostmanClient: Sendable {
    public let baseURL: String
    /// The longest a request handed to the HTTP client waits for a connection: the client's connect
    /// timeout (`HTTPClient.Configuration.postmanRetry`), which bounds both the making of a connection (TCP, a
    /// proxy's CONNECT, TLS together) and a request's wait for one. Once it has a connection, a request can
    /// still be held until its deadline (`request_timeout`): the takeovers of the run's hold and of a lease
    /// wait out the longer of the two (`RunSettings.longestSendDelay`).
    public static let connectWait: Duration = .seconds(3)

    public let requestTimeout: Duration
    public let userAgent: String
    private let httpClient: HTTPClient
    private let logger: Logger
    /// Called when a request ends without an answer although it may have reached Postman (a timeout, a
    /// connection broken after it was written): its bytes can still be on their way (a proxy, a lossy
    /// network), which the run's hold must know when it is given up (`RunHolder.noteUnansweredRequest`).
    private let onUnanswered: (@Sendable () -> Void)?

    /// Larger bodies than this are treated as bad responses (a 1000-item page is well under 16 MiB).
    static let maxBodyBytes = 32 * 1024 * 1024

    public init(
        baseURL: String, httpClient: HTTPClient = .shared, requestTimeout: Duration = .seconds(10),
        userAgent: String = "postman-retry/0.1", logger: Logger = Logger(label: "postman-api"),
        onUnanswered: (@Sendable () -> Void)? = nil
    ) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.httpClient = httpClient
        self.requestTimeout = requestTimeout
        self.userAgent = userAgent
        self.logger = logger
        self.onUnanswered = onUnanswered
    }

    // MARK: - Endpoints

    /// `POST /campaigns/{c}/messages/{m}/retry` → 201.
    public func retryMessage(campaignId: String, messageId: String, apiKey: String) async throws -> RetryCallResult {
        let path = "/campaigns/\(PathSegment.encode(campaignId))/messages/\(PathSegment.encode(messageId))/retry"
        let (_, body) = try await send(.POST, path: path, apiKey: apiKey, expect: 201)
        // A 201 is an accepted retry whatever its body says; the message is a bonus.
        return .accepted(Self.message(body))
    }

    /// `GET /campaigns/{c}/messages/{m}` → 200.
    public func getMessage(campaignId: String, messageId: String, apiKey: String) async throws -> PostmanMessage {
        let path = "/campaigns/\(PathSegment.encode(campaignId))/messages/\(PathSegment.encode(messageId))"
        let (status, body) = try await send(.GET, path: path, apiKey: apiKey, expect: 200)
        guard let message = Self.message(body) else {
            throw badBody(status: status, what: "message object")
        }
        return message
    }

    /// `GET /campaigns/{c}/messages?limit=&after=` → 200. With `wanted`, only the messages it says yes to
    /// are decoded whole; the page's `otherIds` holds the ids of the rest.
    public func listCampaignMessages(
        campaignId: String, limit: Int, after: String?, apiKey: String,
        fullyDecoding wanted: (@Sendable (String) -> Bool)? = nil
    ) async throws -> PostmanPage {
        let path = "/campaigns/\(PathSegment.encode(campaignId))/messages" + Self.query(limit: limit, after: after)
        return try await page(path: path, apiKey: apiKey, wanted: wanted)
    }

    /// `GET /campaigns/{c}/batch/{b}/messages?limit=&after=` → 200.
    public func listBatchMessages(
        campaignId: String, batchId: String, limit: Int, after: String?, apiKey: String
    ) async throws -> PostmanPage {
        let path =
            "/campaigns/\(PathSegment.encode(campaignId))/batch/\(PathSegment.encode(batchId))/messages"
            + Self.query(limit: limit, after: after)
        return try await page(path: path, apiKey: apiKey)
    }

    /// `POST /campaigns/{c}/batch/{b}/retry` → 201 with no body.
    public func retryBatch(campaignId: String, batchId: String, apiKey: String) async throws {
        let path = "/campaigns/\(PathSegment.encode(campaignId))/batch/\(PathSegment.encode(batchId))/retry"
        _ = try await send(.POST, path: path, apiKey: apiKey, expect: 201)
    }

    // MARK: - Plumbing

    private func page(path: String, apiKey: String, wanted: (@Sendable (String) -> Bool)? = nil) async throws -> PostmanPage {
        let (status, body) = try await send(.GET, path: path, apiKey: apiKey, expect: 200)
        guard let page = Self.page(body, wanted: wanted) else { throw badBody(status: status, what: "page of messages") }
        return page
    }

    /// A page: read directly from the bytes when it is plain JSON, else by the tolerant `Decode` and then
    /// split by `wanted` (the same result either way; `FastDecode`).
    static func page(_ body: Data, wanted: ((String) -> Bool)? = nil) -> PostmanPage? {
        if let fast = FastDecode.page(body, fullyDecoding: wanted) { return fast }
        guard var page = Decode.object(body).flatMap(Decode.page) else { return nil }
        if let wanted {
            let all = page.messages
            page.messages = []
            for message in all {
                if wanted(message.id) { page.messages.append(message) } else { page.otherIds.append(message.id) }
            }
        }
        return page
    }

    /// A message object: read directly from the bytes when it is plain JSON, else by the tolerant `Decode`
    /// (the same result either way; `FastDecode`).
    static func message(_ body: Data) -> PostmanMessage? {
        FastDecode.message(body) ?? Decode.object(body).flatMap(Decode.message)
    }

    static func query(limit: Int, after: String?) -> String {
        var q = "?limit=\(limit)"
        // Cursors are base64 (may hold + / =): encode them so they survive as one query value.
        if let after { q += "&after=" + PathSegment.encode(after) }
        return q
    }

    private func badBody(status: Int, what: String) -> PostmanAPIError {
        PostmanAPIError(kind: .badResponse(status: status), message: "HTTP \(status) body is not a \(what)")
    }

    /// Sends one request; returns status and body when the status is `expect`, throws PostmanAPIError otherwise.
    private func send(_ method: HTTPMethod, path: String, apiKey: String, expect: Int) async throws -> (Int, Data) {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(apiKey)")
        request.headers.add(name: "User-Agent", value: userAgent)
        request.headers.add(name: "Accept", value: "application/json")
        let started = ContinuousClock.now
        let status: Int
        let body: Data
        let retryAfterHeader: String?
        do {
            let response = try await httpClient.execute(request, timeout: Self.timeAmount(requestTimeout))
            ResponseTiming.current?.headArrived()
            status = Int(response.status.code)
            retryAfterHeader = response.headers.first(name: "Retry-After")
            let buffer = try await response.body.collect(upTo: Self.maxBodyBytes)
            body = Data(buffer: buffer)
        } catch let error as PostmanAPIError {
            throw error
        } catch {
            let mapped = Self.transportError(error, apiKey: apiKey)
            if mapped.mayHaveReachedServer { onUnanswered?() }
            logger.debug(
                "postman call failed", metadata: ["method": "\(method.rawValue)", "path": "\(path)", "error": "\(mapped)"])
            throw mapped
        }
        logger.debug(
            "postman call",
            metadata: [
                "method": "\(method.rawValue)", "path": "\(path)", "status": "\(status)",
                "elapsed": "\(ContinuousClock.now - started)"
            ]
        )
        if status == expect { return (status, body) }
        let retryAfter = PostmanAPIError.parseRetryAfter(retryAfterHeader)
        if (200..<300).contains(status) || (300..<400).contains(status) {
            // A success status other than the documented one: Postman may have acted, but we cannot tell.
            var error = PostmanAPIError.fromResponse(status: status, body: body, retryAfter: retryAfter, apiKey: apiKey)
            error.kind = .badResponse(status: status)
            error.mayHaveReachedServer = true
            error.isRetryable = true
            throw error
        }
        throw PostmanAPIError.fromResponse(status: status, body: body, retryAfter: retryAfter, apiKey: apiKey)
    }

    /// Sorts transport failures into timeout / connection, and whether the request can have been seen.
    static func transportError(_ error: any Error, apiKey: String) -> PostmanAPIError {
        let text = PostmanAPIError.scrub(String(describing: error), apiKey: apiKey)
        if let http = error as? HTTPClientError {
            switch http {
            case .deadlineExceeded, .readTimeout, .writeTimeout:
                return PostmanAPIError(kind: .timeout, message: text, mayHaveReachedServer: true)
            case .connectTimeout, .getConnectionFromPoolTimeout, .tlsHandshakeTimeout, .httpProxyHandshakeTimeout:
                return PostmanAPIError(kind: .timeout, message: text, mayHaveReachedServer: false)
            case .proxyAuthenticationRequired, .invalidProxyResponse:
                // The proxy answered the CONNECT itself: nothing reached Postman.
                return PostmanAPIError(kind: .connection, message: "proxy: \(text)", mayHaveReachedServer: false)
            default:
                break
            }
        }
        // A TLS failure happens before any byte of the request is sent.
        if error is NIOSSLError || error is NIOSSLExtraError || error is BoringSSLError {
            return PostmanAPIError(kind: .connection, message: "TLS: \(text)", mayHaveReachedServer: false)
        }
        if error is NIOTooManyBytesError {
            return PostmanAPIError(kind: .badResponse(status: 200), message: "response body too large")
        }
        if error is NIOConnectionError {
            return PostmanAPIError(kind: .connection, message: text, mayHaveReachedServer: false)
        }
        if case ChannelError.connectTimeout = error {
            return PostmanAPIError(kind: .connection, message: text, mayHaveReachedServer: false)
        }
        if let io = error as? IOError, [ECONNREFUSED, ENETUNREACH, EHOSTUNREACH].contains(io.errnoCode) {
            return PostmanAPIError(kind: .connection, message: text, mayHaveReachedServer: false)
        }
        // Anything else broke after the connection existed: the request may have been read and acted on.
        return PostmanAPIError(kind: .connection, message: text, mayHaveReachedServer: true)
    }

    static func timeAmount(_ duration: Duration) -> TimeAmount {
        let (seconds, attoseconds) = duration.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
