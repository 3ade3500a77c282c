import AsyncHTTPClient
import EngineTestSupport
import Foundation
import LibPQ
import PostgresTestSupport
import PostmanSimulator
import RetryCore
import RetryJob
import SampleData

/// The shared engine world (Sources/EngineTestSupport), kept small, run through the real binary.
struct MetricsFixture: EngineWorldFixture {
    let world: EngineWorld

    static func make(campaigns: Int = 2, messages: Int = 8, seed: UInt64 = 31) async throws -> MetricsFixture {
        MetricsFixture(
            world: try await EngineWorld.make(
                databasePrefix: "metrics", campaigns: campaigns, messages: messages, mixed: true, seed: seed))
    }

    var apiKeys: [String] { data.simulator.campaigns.map(\.apiKey) }

    /// Runs the real `postman-retry run` binary (built by `make test`) against this world.
    func run(
        _ arguments: [String], keys: [String: String]? = nil, started: @Sendable (Int32) -> Void = { _ in }
    ) async throws -> Tool.Output {
        var environment = ProcessInfo.processInfo.environment.filter { $0.key.hasPrefix("PG") || $0.key == "PATH" }
        environment.merge(keys ?? keysEnvironment) { $1 }
        environment["POSTMAN_API_URL"] = sim.baseURL
        return try await Tool.run(
            Tool.binary,
            ["run", "--poll-timeout", "3s", "--log-level", "error", "--database-url", url] + arguments,
            environment: environment, started: started)
    }

    func stop() async { await world.stop() }
}

/// Runs a program to its end and collects what it printed.
enum Tool {
    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static var binary: String {
        ProcessInfo.processInfo.environment["POSTMAN_RETRY_BIN"]
            ?? MetricsFixture.repoRoot.appendingPathComponent(".build/debug/postman-retry").path
    }

    struct Missing: Error, CustomStringConvertible {
        var description: String
    }

    /// `program` is a path, or a name looked up in PATH.
    static func run(
        _ program: String, _ arguments: [String], environment: [String: String]? = nil, input: String? = nil,
        started: @Sendable (Int32) -> Void = { _ in }
    ) async throws -> Output {
        let process = Process()
        if program.contains("/") {
            guard FileManager.default.isExecutableFile(atPath: program) else {
                throw Missing(description: "\(program) is missing: build it first (`make test` does)")
            }
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [program] + arguments
        }
        if let environment { process.environment = environment }
        let out = Pipe()
        let err = Pipe()
        let stdin = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input == nil ? FileHandle.nullDevice : stdin
        try process.run()
        started(process.processIdentifier)
        if let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try stdin.fileHandleForWriting.close()
        }
        async let outData = offload { out.fileHandleForReading.readDataToEndOfFile() }
        async let errData = offload { err.fileHandleForReading.readDataToEndOfFile() }
        let (o, e) = await (outData, errData)
        await offload { process.waitUntilExit() }
        return Output(
            status: process.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
            stderr: String(decoding: e, as: UTF8.self))
    }
}

/// Runs blocking work (pipe reads, waiting for a process) on a Dispatch thread: the cooperative pool
/// has one thread per core (two here), and blocking them starves the in-process simulator and timers.
func offload<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(returning: work()) }
    }
}

/// One sample as the Prometheus Python client's text parser reads it.
struct Sample: Decodable, Equatable {
    var family: String
    var type: String
    var help: String
    var name: String
    var labels: [String: String]
    var value: Double
}

enum PrometheusText {
    /// The official client's parser (`prometheus_client.parser`), so the format is checked by a reader
    /// that is not ours; it raises on anything malformed.
    static let parser = """
        import json, sys
        from prometheus_client.parser import text_string_to_metric_families
        out = []
        for family in text_string_to_metric_families(sys.stdin.read()):
            for s in family.samples:
                out.append(dict(family=family.name, type=family.type, help=family.documentation,
                                name=s.name, labels=s.labels, value=s.value))
        print(json.dumps(out))
        """

    struct ParseFailure: Error, CustomStringConvertible {
        var description: String
    }

    static func parse(_ text: String) async throws -> [Sample] {
        let output = try await Tool.run("python3", ["-c", parser], input: text)
        guard output.status == 0 else {
            throw ParseFailure(
                description:
                    "prometheus_client could not parse the metrics (pip install prometheus-client; .ci/run does): \(output.stderr)"
            )
        }
        return try JSONDecoder().decode([Sample].self, from: Data(output.stdout.utf8))
    }
}

extension [Sample] {
    /// The value of the sample `name` whose labels include `labels`.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        first { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }?.value
    }

    func named(_ name: String) -> [Sample] { filter { $0.name == name } }
}
