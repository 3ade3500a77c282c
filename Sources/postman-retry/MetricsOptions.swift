import ArgumentParser
import Foundation
import LibPQ
import Logging
import RetryJob
import RetryMetrics

/// `run`'s metrics options (issue 9): where the run's Prometheus metrics go. Both are checked before the
/// run starts, so a typo fails fast with 64 instead of after a night's work.
struct MetricsOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Write the run's metrics to this file (Prometheus text, replaced atomically), e.g. for node_exporter's textfile collector.",
            valueName: "path"))
    var metricsFile: String?

    @Option(
        help: ArgumentHelp(
            "Push the run's metrics to this Prometheus Pushgateway (base URL, e.g. http://pushgateway:9091).",
            valueName: "url"))
    var pushgateway: String?

    func validate() throws {
        if let metricsFile {
            let directory = URL(fileURLWithPath: metricsFile).deletingLastPathComponent().path
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue,
                access(directory, W_OK) == 0
            else {
                throw ValidationError("--metrics-file: the directory \(directory) does not exist or is not writable")
            }
        }
        if pushgateway != nil, gatewayURL == nil {
            throw ValidationError("--pushgateway: expected an http:// or https:// URL with a host")
        }
    }

    var gatewayURL: URL? {
        guard let pushgateway, let url = URL(string: pushgateway), let scheme = url.scheme?.lowercased(),
            scheme == "http" || scheme == "https", url.host?.isEmpty == false
        else { return nil }
        return url
    }

    /// Runs `body` (the run) and publishes its metrics however it ends, also when it is interrupted,
    /// refused or throws, so alerts on the exit status can fire.
    func recording(db: PGConnection, logger: Logger, _ body: () async throws -> RunResult) async throws -> RunResult {
        try await MetricsPublisher(file: metricsFile, pushgateway: gatewayURL, logger: logger).recording(db: db, body)
    }
}
