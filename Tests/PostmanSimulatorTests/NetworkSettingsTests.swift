import Foundation
import Testing

@testable import PostmanAPI

/// Issue 14: the proxy settings (HTTPS_PROXY with credentials, NO_PROXY) and the CA file, parsed.
@Suite("Proxy and CA settings")
struct NetworkSettingsTests {
    @Test("A proxy URL: scheme, user and password, default port; the password never shows")
    func proxyURL() throws {
        let proxy = try ProxySettings.parse("http://svc:s3cr%40t@proxy.agency.gov.sg:3128", setting: "HTTPS_PROXY")
        #expect(proxy.host == "proxy.agency.gov.sg")
        #expect(proxy.port == 3128)
        #expect(proxy.username == "svc")
        #expect(proxy.password == "s3cr@t")
        #expect("\(proxy)" == "http://svc:*****@proxy.agency.gov.sg:3128")
        #expect(proxy.authorizationHeader == "Basic " + Data("svc:s3cr@t".utf8).base64EncodedString())
        #expect(try ProxySettings.parse("proxy:8080", setting: "x") == ProxySettings(host: "proxy", port: 8080))
        #expect(try ProxySettings.parse("http://proxy", setting: "x").port == 80)
        #expect(try ProxySettings.parse("http://[::1]:3128/", setting: "x").host == "::1")
        for bad in ["https://proxy:443", "socks5://proxy:1080", "http://:8080", "http://proxy:8080/path"] {
            #expect(throws: NetworkSettingsError.self, "\(bad)") { try ProxySettings.parse(bad, setting: "HTTPS_PROXY") }
        }
        do {
            _ = try ProxySettings.parse("ftp://svc:hunter2@proxy:21", setting: "HTTPS_PROXY")
            Issue.record("ftp:// accepted")
        } catch {
            #expect("\(error)".contains("HTTPS_PROXY"))
            #expect(!"\(error)".contains("hunter2"), "the password leaked into the error: \(error)")
        }
    }

    @Test("NO_PROXY: comma list, host suffixes with or without a dot, ports, IPs, case, and * alone")
    func noProxy() {
        let rules = NoProxy(" localhost, .internal.gov.sg,agency.sg , 10.0.0.7, Example.COM:8443,[::1] ")
        #expect(rules.matches(host: "localhost"))
        #expect(rules.matches(host: "LOCALHOST."))
        #expect(rules.matches(host: "db.internal.gov.sg"))
        #expect(rules.matches(host: "internal.gov.sg"))
        #expect(rules.matches(host: "agency.sg"))
        #expect(rules.matches(host: "www.agency.sg"))
        #expect(!rules.matches(host: "notagency.sg"), "a suffix matches at a dot only")
        #expect(rules.matches(host: "10.0.0.7"))
        #expect(!rules.matches(host: "10.0.0.70"))
        #expect(rules.matches(host: "example.com", port: 8443))
        #expect(!rules.matches(host: "example.com", port: 443))
        #expect(rules.matches(host: "::1"))
        #expect(rules.matches(host: "[::1]"))
        #expect(!rules.matches(host: "postman.gov.sg"))
        #expect(NoProxy("*").matches(host: "postman.gov.sg"))
        #expect(NoProxy("*.gov.sg").matches(host: "postman.gov.sg"))
        #expect(!NoProxy("").matches(host: "postman.gov.sg"))
        #expect(NoProxy("").isEmpty)

        let network = NetworkSettings(proxy: ProxySettings(host: "proxy", port: 3128), noProxy: NoProxy("test.postman.gov.sg"))
        #expect(network.proxy(for: URL(string: "https://postman.gov.sg/api/v2")!) != nil)
        #expect(network.proxy(for: URL(string: "https://test.postman.gov.sg/api/v2")!) == nil)
        #expect(NetworkSettings.direct.proxy(for: URL(string: "https://postman.gov.sg/api/v2")!) == nil)
    }

    @Test("A CA file that is missing or holds no certificate is a setting error naming the file")
    func badCAFile() throws {
        let missing = NetworkSettings(caFiles: ["/nonexistent/ca.pem"])
        #expect(throws: NetworkSettingsError.self) { try missing.tlsConfiguration() }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("not-a-cert-\(UUID().uuidString).pem").path
        try "hello\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try NetworkSettings(caFiles: [path]).tlsConfiguration()
            Issue.record("a file with no certificate was accepted")
        } catch {
            #expect("\(error)".contains(path))
        }
    }
}
