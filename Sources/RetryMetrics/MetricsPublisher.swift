import AsyncHTTPClient
import Foundation
import LibPQ
import Logging
import NIOCore
import NIOHTTP1
import RetryCore
import RetryJob  // RunResult only; the journal reads come from RetryJournal
import RetryJournal
import RetrySettings

/// Where a run's metrics go: a file for node_exporter's textfile collector, a Prometheus Pushgateway, or
/// both. Publishing never changes how the run ends: a metrics failure is logged as an error and the exit
/// status stays the run's own (CONTRACT.md section 5 fixes what each code means).
public struct MetricsPublisher: Sendable {
    /// The textfile collector reads `*.prom` files; the file is replaced atomically.
    public var file: String?
    /// Base URL of a Pushgateway; the metrics go to `<base>/metrics/job/postman_retry` (see ``pushURL(_:)``).
    public var pushgateway: URL?
    /// Bounds the push, so an interrupted run still exits within its 10-second shutdown.
    public var pushTimeout: Duration
    public var logger: Logger

    public static let job = "postman_retry"

    public init(file: String?, pushgateway: URL?, pushTimeout: Duration = .seconds(3), logger: Logger) {
        self.file = file
        self.pushgateway = pushgateway
        self.pushTimeout = pushTimeout
        self.logger = logger
    }

    public var isEnabled: Bool { file != nil || pushgateway != nil }

    /// Runs `body` (the run) and publishes its metrics however it ends: with its result, or, when it
    /// threw (lock held, schema missing, database lost), with the exit status the error maps to.
    public func recording(db: PGConnection, _ body: () async throws -> RunResult) async throws -> RunResult {
        guard isEnabled else { return try await body() }
        let started = ContinuousClock.now
        do {
            let result = try await body()
            await publish(
                RunMetrics(
                    exitStatus: result.exitStatus.rawValue, duration: ContinuousClock.now - started,
                    summary: result.summary, lastSuccess: await Self.lastSuccess(db: db)))
            return result
        } catch {
            await publish(
                RunMetrics(
                    exitStatus: JobError.classify(error).status.rawValue, duration: ContinuousClock.now - started,
                    summary: nil, lastSuccess: await Self.lastSuccess(db: db)))
            throw error
        }
    }

    /// Writes and pushes `metrics`; failures are logged, not thrown.
    public func publish(_ metrics: RunMetrics) async {
        let text = metrics.exposition()
        if let file {
            do {
                try Self.writeAtomically(text, to: file)
                logger.debug("metrics written", metadata: ["metrics.file": "\(file)"])
            } catch {
                logger.error("could not write the metrics file", metadata: ["metrics.file": "\(file)", "error": "\(error)"])
            }
        }
        if let pushgateway {
            do {
                try await Self.push(text, to: pushgateway, timeout: pushTimeout)
                logger.debug("metrics pushed", metadata: ["pushgateway": "\(Self.redacted(pushgateway))"])
            } catch {
                logger.error(
                    "could not push the metrics",
                    metadata: ["pushgateway": "\(Self.redacted(pushgateway))", "error": "\(error)"])
            }
        }
    }

    /// When the latest completed run finished, or nil when the journal has none (or cannot be read).
    public static func lastSuccess(db: PGConnection) async -> Date? {
        (try? await HistoryReads.lastSuccess(db: db)) ?? nil
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Replaces `path` with `text` the way the textfile collector needs: a temporary file in the same
    /// directory (so `rename` is atomic; its name does not end in `.prom`, so a half-written file is never
    /// collected), flushed, made world-readable for node_exporter, then renamed over the old one.
    public static func writeAtomically(_ text: String, to path: String) throws {
        let target = URL(fileURLWithPath: path)
        let directory = target.deletingLastPathComponent().path
        let temporary = "\(directory)/.\(target.lastPathComponent).\(getpid()).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Failure(description: "\(temporary): \(String(cString: strerror(errno)))") }
        var failure: String?
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count, failure == nil {
            let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno != EINTR { failure = String(cString: strerror(errno)) }
            } else {
                written += n
            }
        }
        // The umask could have narrowed the mode given to open; node_exporter runs as another user.
        if failure == nil, fchmod(fd, 0o644) != 0 || fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        close(fd)
        if failure == nil, rename(temporary, path) != 0 { failure = String(cString: strerror(errno)) }
        if let failure {
            unlink(temporary)
            throw Failure(description: "\(path): \(failure)")
        }
    }

    /// The push URL for `base`: `<base>/metrics/job/postman_retry`. A URL that already names a group
    /// (`…/metrics/job/postman_retry/agency/moh`) is used as it is, so deployments sharing one Pushgateway
    /// can keep their metrics apart.
    public static func pushURL(_ base: URL) -> String {
        var text = base.absoluteString
        while text.hasSuffix("/") { text.removeLast() }
        if base.path.contains("/metrics/job/") { return text }
        return "\(text)/metrics/job/\(job)"
    }

    /// PUT replaces every metric of the group, so nothing from an earlier run survives beside this one's.
    public static func push(_ text: String, to base: URL, timeout: Duration) async throws {
        var request = HTTPClientRequest(url: pushURL(base))
        request.method = .PUT
        request.headers.add(name: "Content-Type", value: "text/plain; version=0.0.4; charset=utf-8")
        request.body = .bytes(ByteBuffer(string: text))
        let response = try await HTTPClient.shared.execute(request, timeout: .nanoseconds(Int64(timeout.seconds * 1e9)))
        let body = try await response.body.collect(upTo: 64 * 1024)
        guard (200..<300).contains(Int(response.status.code)) else {
            throw Failure(
                description: "Pushgateway answered \(response.status.code): \(String(buffer: body).prefix(300))")
        }
    }

    /// The URL without user and password, for logs.
    static func redacted(_ url: URL) -> String {
        guard var parts = URLComponents(url: url, resolvingAgainstBaseURL: false) else { return "(url)" }
        if parts.user != nil || parts.password != nil {
            parts.user = nil
            parts.password = nil
        }
        return parts.string ?? "(url)"
    }
}
