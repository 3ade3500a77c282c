import AsyncHTTPClient
import Foundation
import NIOSSL

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
                throw NetworkSettingsError(
                    setting: "CA file \(path)", problem: "holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
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
}
