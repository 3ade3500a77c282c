import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// A setting of the network path to Postman that cannot work (a malformed proxy URL, a CA file that
/// holds no certificate). The caller turns it into exit 64. Never quotes a proxy password.
public struct NetworkSettingsError: Error, Sendable, CustomStringConvertible {
    public var setting: String
    public var problem: String
    public init(setting: String, problem: String) {
        self.setting = setting
        self.problem = problem
    }
    public var description: String { "\(setting): \(problem)" }
}

/// Postman's TLS certificate was refused: not trusted, or not for the host. Waiting does not heal
/// this (a wrong CA, a TLS-inspecting proxy whose CA is not given), so the run stops at once (exit 69).
public struct CertificateRejected: Error, Sendable, CustomStringConvertible {
    public enum Reason: Sendable, Equatable {
        /// Not signed by a trusted CA, expired, or not yet valid.
        case notTrusted
        /// Trusted, but issued for another name than the host.
        case hostMismatch
    }
    public var host: String
    public var reason: Reason
    /// What the TLS library said.
    public var detail: String

    public var description: String {
        switch reason {
        case .notTrusted:
            return "the TLS certificate of \(host) is not trusted (not signed by a CA the job trusts, or expired, or not yet "
                + "valid: \(detail)); if a TLS-inspecting proxy sits in between, give its CA certificate with --ca-file, "
                + "SSL_CERT_FILE or [postman] ca_file"
        case .hostMismatch:
            return "the TLS certificate presented for \(host) does not match the host \(host) (\(detail)); check the "
                + "API URL, or the proxy that answers for it"
        }
    }
}

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
        (matchesAll ? ["*"] : []) + entries.map { entry in
            let host = entry.host.contains(":") ? "[\(entry.host)]" : entry.host
            return entry.port.map { "\(host):\($0)" } ?? host
        }.joined(separator: ",")
    }
}

/// How the job reaches Postman: an optional proxy (with its exceptions) and CA certificates trusted
/// in addition to the system's (for a TLS-inspecting proxy, or a private test environment).
public struct NetworkSettings: Sendable {
    public var proxy: ProxySettings?
    public var noProxy: NoProxy
    /// PEM files whose certificates are trusted as CAs, on top of the system's trust store.
    public var caFiles: [String]

    public init(proxy: ProxySettings? = nil, noProxy: NoProxy = NoProxy(""), caFiles: [String] = []) {
        self.proxy = proxy
        self.noProxy = noProxy
        self.caFiles = caFiles
    }

    /// No proxy, the system's trust store only.
    public static let direct = NetworkSettings()

    /// The proxy to use for `url`, or nil to go direct.
    public func proxy(for url: URL) -> ProxySettings? {
        guard let proxy, let host = url.host else { return nil }
        let port = url.port ?? (url.scheme?.lowercased() == "https" ? 443 : 80)
        return noProxy.matches(host: host, port: port) ? nil : proxy
    }

    /// Reads every CA file; a file that cannot be read or holds no PEM certificate is a setting error.
    public func loadCACertificates() throws -> [NIOSSLCertificate] {
        var certificates: [NIOSSLCertificate] = []
        for path in caFiles {
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw NetworkSettingsError(setting: "CA file \(path)", problem: "cannot be read (does it exist?)")
            }
            let loaded: [NIOSSLCertificate]
            do {
                loaded = try NIOSSLCertificate.fromPEMFile(path)
            } catch {
                throw NetworkSettingsError(setting: "CA file \(path)", problem: "is not a PEM file of certificates (\(error))")
            }
            guard !loaded.isEmpty else {
                throw NetworkSettingsError(setting: "CA file \(path)", problem: "holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
            }
            certificates.append(contentsOf: loaded)
        }
        return certificates
    }

    /// The client's TLS configuration: full verification against the system's trust store plus the CA files.
    public func tlsConfiguration() throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        let extra = try loadCACertificates()
        if !extra.isEmpty { tls.additionalTrustRoots = [.certificates(extra)] }
        return tls
    }

    /// Sets the proxy and the TLS configuration of an async-http-client configuration for requests to `baseURL`.
    public func apply(to configuration: inout HTTPClient.Configuration, baseURL: String) throws {
        configuration.tlsConfiguration = try tlsConfiguration()
        if let url = URL(string: baseURL), let proxy = proxy(for: url) {
            configuration.proxy = .server(host: proxy.host, port: proxy.port, authorization: proxy.authorization)
        } else {
            configuration.proxy = nil
        }
    }

    /// Before the first request: a TLS handshake with Postman's host (through the proxy when one is
    /// used), with no HTTP request in it, so a certificate that is not trusted or not for the host stops
    /// the run at once instead of being retried with backoff. Throws `CertificateRejected` for those;
    /// any other failure (connection refused, proxy down, timeout) is only logged: the run's own
    /// backoff decides about an outage. Nothing is checked for an http URL.
    public func checkCertificate(of baseURL: String, timeout: Duration = .seconds(10), logger: Logger) async throws {
        guard let url = URL(string: baseURL), url.scheme?.lowercased() == "https", let rawHost = url.host else { return }
        var host = rawHost
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let port = url.port ?? 443
        let context = try NIOSSLContext(configuration: tlsConfiguration())
        let via = proxy(for: url)
        do {
            try await Self.handshake(host: host, port: port, context: context, proxy: via, timeout: timeout)
            logger.debug("TLS certificate of Postman checked", metadata: ["host": "\(host)", "proxy": "\(via.map { "\($0)" } ?? "none")"])
        } catch let rejected as CertificateRejected {
            throw rejected
        } catch {
            logger.warning(
                "could not check Postman's TLS certificate before the run; going on",
                metadata: ["host": "\(host)", "proxy": "\(via.map { "\($0)" } ?? "none")", "error": "\(error)"])
        }
    }

    /// Sorts a TLS failure: a certificate that is not trusted or not for the host, or nil for anything else.
    public static func certificateRejection(_ error: any Error, host: String) -> CertificateRejected? {
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            return CertificateRejected(host: host, reason: .hostMismatch, detail: "\(extra)")
        }
        if let ssl = error as? NIOSSLError {
            switch ssl {
            case .handshakeFailed(let boring):
                let text = "\(boring)"
                if text.contains("CERTIFICATE_VERIFY_FAILED") {
                    return CertificateRejected(host: host, reason: .notTrusted, detail: "CERTIFICATE_VERIFY_FAILED")
                }
            case .unableToValidateCertificate, .noCertificateToValidate:
                return CertificateRejected(host: host, reason: .notTrusted, detail: "\(ssl)")
            default:
                break
            }
        }
        return nil
    }

    static func handshake(
        host: String, port: Int, context: NIOSSLContext, proxy: ProxySettings?, timeout: Duration
    ) async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: Void.self)
        let serverName: String? = Self.isIPAddress(host) ? nil : host
        let connectTimeout = TimeAmount.nanoseconds(Int64(min(timeout, .seconds(5)).components.seconds) * 1_000_000_000)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(connectTimeout)
            .channelInitializer { channel in
                do {
                    if let proxy {
                        try channel.pipeline.syncOperations.addHandler(
                            ConnectTunnelHandler(
                                target: "\(serverName ?? (host.contains(":") ? "[\(host)]" : host)):\(port)",
                                authorization: proxy.authorizationHeader,
                                then: { try TLSHandshakeWatcher.install(on: channel, context: context, serverName: serverName, promise: promise) },
                                promise: promise))
                    } else {
                        try TLSHandshakeWatcher.install(on: channel, context: context, serverName: serverName, promise: promise)
                    }
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: proxy?.host ?? host, port: proxy?.port ?? port).get()
        } catch {
            promise.fail(error)
            throw error
        }
        let deadline = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000)) {
            promise.fail(HandshakeTimeout())
        }
        defer {
            deadline.cancel()
            channel.close(promise: nil)
        }
        do {
            try await promise.futureResult.get()
        } catch {
            if let rejected = certificateRejection(error, host: host) { throw rejected }
            throw error
        }
    }

    struct HandshakeTimeout: Error, CustomStringConvertible {
        var description: String { "no TLS handshake within the time allowed" }
    }

    struct ProxyRefusedTunnel: Error, CustomStringConvertible {
        var statusLine: String
        var description: String { "the proxy refused the tunnel: \(statusLine)" }
    }

    struct ClosedEarly: Error, CustomStringConvertible {
        var description: String { "the connection closed before the TLS handshake completed" }
    }

    static func isIPAddress(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }
}

/// Completes the promise when the TLS handshake completes, fails it on any error before.
final class TLSHandshakeWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    private let promise: EventLoopPromise<Void>
    private var done = false

    init(promise: EventLoopPromise<Void>) { self.promise = promise }

    static func install(on channel: any Channel, context: NIOSSLContext, serverName: String?, promise: EventLoopPromise<Void>) throws {
        let tls = try NIOSSLClientHandler(context: context, serverHostname: serverName)
        try channel.pipeline.syncOperations.addHandler(tls)
        try channel.pipeline.syncOperations.addHandler(TLSHandshakeWatcher(promise: promise))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event, !done {
            done = true
            promise.succeed(())
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !done {
            done = true
            promise.fail(error)
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done {
            done = true
            promise.fail(NetworkSettings.ClosedEarly())
        }
        context.fireChannelInactive()
    }
}

/// Opens a CONNECT tunnel through an HTTP proxy, then hands the channel to `then` (the TLS handshake).
final class ConnectTunnelHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let target: String
    private let authorization: String?
    private let then: () throws -> Void
    private let promise: EventLoopPromise<Void>
    private var received = ""
    private var done = false

    init(target: String, authorization: String?, then: @escaping () throws -> Void, promise: EventLoopPromise<Void>) {
        self.target = target
        self.authorization = authorization
        self.then = then
        self.promise = promise
    }

    func channelActive(context: ChannelHandlerContext) {
        var head = "CONNECT \(target) HTTP/1.1\r\nHost: \(target)\r\n"
        if let authorization { head += "Proxy-Authorization: \(authorization)\r\n" }
        head += "\r\n"
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: head)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        var buffer = unwrapInboundIn(data)
        received += buffer.readString(length: buffer.readableBytes) ?? ""
        guard let end = received.range(of: "\r\n\r\n") else {
            if received.utf8.count > 16 * 1024 { fail(context, NetworkSettings.ProxyRefusedTunnel(statusLine: "oversized answer")) }
            return
        }
        let statusLine = String(received[..<end.lowerBound].prefix(while: { $0 != "\r" }))
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, parts[1] == "200" else {
            fail(context, NetworkSettings.ProxyRefusedTunnel(statusLine: statusLine))
            return
        }
        done = true
        do {
            try then()
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        } catch {
            promise.fail(error)
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context, error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(context, NetworkSettings.ClosedEarly())
        context.fireChannelInactive()
    }

    private func fail(_ context: ChannelHandlerContext, _ error: any Error) {
        guard !done else { return }
        done = true
        promise.fail(error)
        context.close(promise: nil)
    }
}
