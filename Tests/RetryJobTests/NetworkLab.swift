import Dispatch
import Foundation
import RetryJob

/// Real network parts for the edge tests (issue 14), started by the tests themselves: a private CA and
/// certificates made by openssl, nginx as a TLS front of the simulator, tinyproxy as the egress proxy.
/// A tool that is missing fails the test with what to install; nothing is skipped.
enum NetworkLab {
    struct ToolMissing: Error, CustomStringConvertible {
        var tool: String
        var package: String
        var description: String {
            "\(tool) is not installed (looked on PATH and in /usr/sbin, /usr/bin, /sbin): apt-get install \(package) "
                + "(.ci/run installs it)"
        }
    }

    struct Failed: Error, CustomStringConvertible {
        var description: String
    }

    /// The tool's path: PATH first, then the system directories Debian installs servers in.
    static func tool(_ name: String, package: String) throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for directory in path.split(separator: ":").map(String.init) + ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
            let candidate = directory + "/" + name
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw ToolMissing(tool: name, package: package)
    }

    /// A fresh directory for one test's files.
    static func directory(_ name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent(
            "postman-retry-\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Runs a short command to its end off the cooperative pool; throws with its output when it fails.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], in directory: URL) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: executable)
                process.arguments = arguments
                process.currentDirectoryURL = directory
                let output = Pipe()
                process.standardOutput = output
                process.standardError = output
                do {
                    try process.run()
                } catch {
                    continuation.resume(throwing: error)
                    return
                }
                let data = output.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                let text = String(decoding: data, as: UTF8.self)
                if process.terminationStatus == 0 {
                    continuation.resume(returning: text)
                } else {
                    continuation.resume(
                        throwing: Failed(
                            description:
                                "\(executable) \(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(text)"))
                }
            }
        }
    }

    /// A TCP port free on loopback just now.
    static func freePort() throws -> Int {
        let held = try HeldPort()
        held.release()
        return held.port
    }

    /// A loopback port held until `release()`, so no other test's server can take it meanwhile (a port bound
    /// and released was taken by one in a full run). Not `listening`: a connect to it is refused. `listening`:
    /// the kernel completes connections into its backlog and nothing ever answers (a hung upstream, or a
    /// database that keeps a client waiting in its connect).
    final class HeldPort: @unchecked Sendable {
        let port: Int
        private let fd: Int32

        init(listening: Bool = false) throws {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw Failed(description: "socket() failed") }
            do {
                port = try NetworkLab.bindLoopback(fd)
                if listening, listen(fd, 64) != 0 { throw Failed(description: "listen() failed: errno \(errno)") }
            } catch {
                close(fd)
                throw error
            }
        }

        func release() { close(fd) }
    }

    /// A server that failed to start on a port picked by `freePort` (another test took the port between the
    /// pick and the bind) is started again on another, up to three times.
    static func onFreePort<T>(_ start: (Int) async throws -> T) async throws -> T {
        var lastError: (any Error)?
        for _ in 0..<3 {
            do { return try await start(try freePort()) } catch { lastError = error }
        }
        throw lastError!
    }

    private static func bindLoopback(_ fd: Int32) throws -> Int {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw Failed(description: "bind() failed") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Waits until something accepts connections on 127.0.0.1:`port`.
    static func waitForListener(port: Int, process: Process, log: URL, within seconds: Double = 10) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            guard process.isRunning else {
                let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
                throw Failed(description: "\(process.executableURL?.lastPathComponent ?? "server") exited at start: \(text)")
            }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            close(fd)
            if connected == 0 { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw Failed(description: "nothing listens on 127.0.0.1:\(port) after \(seconds) s")
    }

    /// Starts a long-running server; its output goes to `log`.
    static func start(_ executable: String, _ arguments: [String], log: URL) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    /// Ends a server this test started, and reaps it.
    /// SIGTERM now; the wait for the exit (and SIGKILL after 5 s) happens on a Dispatch thread. Waiting here
    /// blocked one of Swift's two cooperative threads (it runs in `defer`) for the whole 5 s after each
    /// PgBouncer test (`isRunning` did not turn false in time; the PgBouncer tests took 22 s, now 12-16 s).
    /// With the other thread busy too, every in-process run of the suite missed its heartbeats and lost its
    /// hold (exit 75; seen in two of five full runs on 2026-12-06).
    static func stop(_ process: Process) {
        guard process.isRunning else { return }
        process.terminate()
        let watched = WatchedProcess(process: process)
        DispatchQueue.global().async {
            let deadline = Date().addingTimeInterval(5)
            while watched.process.isRunning, Date() < deadline { usleep(20_000) }
            if watched.process.isRunning { kill(watched.process.processIdentifier, SIGKILL) }
        }
    }

    /// A process handed to the Dispatch thread that reaps it (only that thread looks at it from then on).
    struct WatchedProcess: @unchecked Sendable { let process: Process }

    // MARK: - Certificates

    /// A private CA and server certificates signed by it, made by openssl in `directory`.
    struct Certificates {
        var caFile: URL
        /// For `localhost` and 127.0.0.1.
        var serverCert: URL
        var serverKey: URL
        /// Signed by the same CA, but for `wrong.example` only.
        var wrongHostCert: URL
        var wrongHostKey: URL
    }

    static func makeCertificates(in directory: URL) async throws -> Certificates {
        let openssl = try tool("openssl", package: "openssl")
        let curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try await run(
            openssl,
            ["req", "-x509"] + curve + [
                "-keyout", "ca.key", "-out", "ca.pem", "-days", "3", "-subj", "/CN=postman-retry test CA",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"
            ], in: directory)
        for (name, names) in [("server", "DNS:localhost,IP:127.0.0.1"), ("wrong", "DNS:wrong.example")] {
            try await run(
                openssl, ["req"] + curve + ["-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(name)"],
                in: directory)
            try "subjectAltName=\(names)\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
                .write(to: directory.appendingPathComponent("\(name).ext"), atomically: true, encoding: .utf8)
            try await run(
                openssl,
                [
                    "x509", "-req", "-in", "\(name).csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                    "-out", "\(name).pem", "-days", "2", "-extfile", "\(name).ext"
                ], in: directory)
        }
        return Certificates(
            caFile: directory.appendingPathComponent("ca.pem"), serverCert: directory.appendingPathComponent("server.pem"),
            serverKey: directory.appendingPathComponent("server.key"),
            wrongHostCert: directory.appendingPathComponent("wrong.pem"),
            wrongHostKey: directory.appendingPathComponent("wrong.key"))
    }

    // MARK: - nginx

    /// nginx on loopback as a TLS front of `upstreamPort`: `goodPort` presents the localhost certificate,
    /// `wrongHostPort` one for another name (both signed by the private CA).
    struct TLSFront {
        var process: Process
        var goodPort: Int
        var wrongHostPort: Int
        var accessLog: URL
        func stop() { NetworkLab.stop(process) }
        func requestsSeen() -> Int {
            ((try? String(contentsOf: accessLog, encoding: .utf8)) ?? "").split(separator: "\n").count
        }
    }

    static func startTLSFront(upstreamPort: Int, certificates: Certificates, in directory: URL) async throws -> TLSFront {
        try await onFreePort { good in
            try await onFreePort { wrong in
                try await startTLSFront(
                    upstreamPort: upstreamPort, certificates: certificates, in: directory, ports: (good, wrong))
            }
        }
    }

    private static func startTLSFront(
        upstreamPort: Int, certificates: Certificates, in directory: URL, ports: (good: Int, wrong: Int)
    ) async throws -> TLSFront {
        let (good, wrong) = ports
        func server(_ port: Int, _ cert: URL, _ key: URL) -> String {
            """
              server {
                listen 127.0.0.1:\(port) ssl;
                server_name localhost;
                ssl_certificate \(cert.path);
                ssl_certificate_key \(key.path);
                location / {
            \(proxyPass(to: upstreamPort))
                }
              }
            """
        }
        let process = try await startNginx(
            in: directory,
            servers: server(good, certificates.serverCert, certificates.serverKey) + "\n"
                + server(wrong, certificates.wrongHostCert, certificates.wrongHostKey),
            ports: [good, wrong])
        return TLSFront(
            process: process, goodPort: good, wrongHostPort: wrong,
            accessLog: directory.appendingPathComponent("nginx-access.log"))
    }

    /// The directives of a `location` that passes requests on to `port` on loopback (keep-alive kept).
    static func proxyPass(to port: Int) -> String {
        """
              proxy_pass http://127.0.0.1:\(port);
              proxy_http_version 1.1;
              proxy_set_header Connection "";
        """
    }

    /// nginx on loopback in front of a simulator, in a directory of its own named after `name`: `locations`
    /// (its own `location` blocks) first, everything else passed on to the simulator. Its access log is
    /// `nginx-access.log` in that directory.
    static func startSimulatorFront(name: String, simulatorPort: Int, locations: String) async throws -> (
        process: Process, port: Int, directory: URL
    ) {
        let directory = try self.directory(name)
        return try await onFreePort { port in
            let servers = """
                  server {
                    listen 127.0.0.1:\(port);
                \(locations)
                    location / {
                \(proxyPass(to: simulatorPort))
                    }
                  }
                """
            let process = try await startNginx(in: directory, servers: servers, ports: [port])
            return (process, port, directory)
        }
    }

    /// nginx in the foreground with `servers` (its `server { … }` blocks) in a config of its own in
    /// `directory` (access log `nginx-access.log`); returns once every one of `ports` listens.
    static func startNginx(in directory: URL, servers: String, ports: [Int]) async throws -> Process {
        let nginx = try tool("nginx", package: "nginx-light")
        let d = directory.path
        let config = """
            daemon off;
            master_process off;
            pid \(d)/nginx.pid;
            error_log \(d)/nginx-error.log info;
            events { worker_connections 512; }
            http {
              access_log \(d)/nginx-access.log;
              client_body_temp_path \(d)/body; proxy_temp_path \(d)/proxy; fastcgi_temp_path \(d)/fastcgi;
              uwsgi_temp_path \(d)/uwsgi; scgi_temp_path \(d)/scgi;
            \(servers)
            }
            """
        let configURL = directory.appendingPathComponent("nginx.conf")
        try config.write(to: configURL, atomically: true, encoding: .utf8)
        let process = try start(
            nginx, ["-p", d + "/", "-c", configURL.path, "-e", "\(d)/nginx-error.log"],
            log: directory.appendingPathComponent("nginx.out"))
        do {
            for port in ports {
                try await waitForListener(port: port, process: process, log: directory.appendingPathComponent("nginx-error.log"))
            }
        } catch {
            stop(process)
            throw error
        }
        return process
    }

    // MARK: - tinyproxy

    struct Proxy {
        var process: Process
        var port: Int
        var log: URL
        func stop() { NetworkLab.stop(process) }
        /// tinyproxy's `Request (file descriptor N): CONNECT host:port HTTP/1.1` lines.
        func connects(to target: String) -> Int {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            return text.components(separatedBy: "CONNECT \(target) HTTP/1.1").count - 1
        }
        var logText: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
    }

    /// tinyproxy on loopback, optionally demanding basic auth.
    static func startProxy(in directory: URL, name: String = "tinyproxy", user: (String, String)? = nil) async throws -> Proxy {
        try await onFreePort { port in try await startProxy(in: directory, name: name, user: user, port: port) }
    }

    private static func startProxy(in directory: URL, name: String, user: (String, String)?, port: Int) async throws -> Proxy {
        let tinyproxy = try tool("tinyproxy", package: "tinyproxy")
        let log = directory.appendingPathComponent("\(name).log")
        var config = """
            Port \(port)
            Listen 127.0.0.1
            Timeout 60
            LogFile "\(log.path)"
            LogLevel Info
            MaxClients 100
            Allow 127.0.0.1
            DisableViaHeader Yes

            """
        if let (name, password) = user { config += "BasicAuth \(name) \(password)\n" }
        let configURL = directory.appendingPathComponent("\(name).conf")
        try config.write(to: configURL, atomically: true, encoding: .utf8)
        let process = try start(tinyproxy, ["-d", "-c", configURL.path], log: directory.appendingPathComponent("\(name).out"))
        do {
            try await waitForListener(port: port, process: process, log: directory.appendingPathComponent("\(name).out"))
        } catch {
            stop(process)
            throw error
        }
        return Proxy(process: process, port: port, log: log)
    }
}
