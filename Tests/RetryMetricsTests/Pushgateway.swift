import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// A real Prometheus Pushgateway (Debian's `prometheus-pushgateway`) on 127.0.0.1 and a free port,
/// keeping its metrics in memory only; stopped by the test that started it.
struct Pushgateway {
    let process: Process
    let port: Int

    var baseURL: String { "http://127.0.0.1:\(port)" }

    static let binary = "/usr/bin/prometheus-pushgateway"

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func start() async throws -> Pushgateway {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw Failure(description: "\(binary) is missing: apt-get install prometheus-pushgateway (.ci/run does)")
        }
        // A port that was free a moment ago can be taken before the gateway binds it: try a few.
        for _ in 0..<3 {
            let port = try freePort()
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            // Debian's build persists to /var/lib/prometheus/pushgateway.data by default: keep it in memory,
            // so no run sees another's metrics and nothing is written outside the test.
            process.arguments = ["--web.listen-address=127.0.0.1:\(port)", "--persistence.file=", "--log.level=warn"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            let gateway = Pushgateway(process: process, port: port)
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline, process.isRunning {
                if (try? await gateway.get("/-/ready").status) == 200 { return gateway }
                try await Task.sleep(for: .milliseconds(50))
            }
            gateway.stop()
        }
        throw Failure(description: "the Pushgateway did not become ready")
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    func get(_ path: String) async throws -> (status: Int, body: String) {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: baseURL + path), timeout: .seconds(5))
        let body = try await response.body.collect(upTo: 16 * 1024 * 1024)
        return (Int(response.status.code), String(buffer: body))
    }

    /// Binds port 0 on loopback to let the kernel pick a free port, then releases it.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                bind(fd, generic, length) == 0 && getsockname(fd, generic, &length) == 0
            }
        }
        guard bound else { throw Failure(description: "bind: \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
