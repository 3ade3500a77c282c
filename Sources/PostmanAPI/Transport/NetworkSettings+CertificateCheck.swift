import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL

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

// The certificate check before the run: a bare TLS handshake with Postman's host, through the
// proxy when one is used (the channel handlers are in ChannelHandlers.swift).
extension NetworkSettings {
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
            logger.debug(
                "TLS certificate of Postman checked", metadata: ["host": "\(host)", "proxy": "\(via.map { "\($0)" } ?? "none")"])
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
                                then: {
                                    try TLSHandshakeWatcher.install(
                                        on: channel, context: context, serverName: serverName, promise: promise)
                                },
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
