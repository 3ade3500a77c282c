import ArgumentParser
import Foundation
import Logging
import PostmanSimulator

/// `postman-sim`: the Postman v2 simulator as a server process (CONTRACT.md §8, docs/simulator.md).
@main
struct PostmanSim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "postman-sim",
        abstract: "Simulates the Postman v2 SMS API endpoints that postman-retry uses.",
        discussion:
            "Prints `listening on HOST:PORT` as the first line of stdout once it accepts connections. See docs/simulator.md."
    )

    @Option(help: "Port to listen on; 0 picks a free port (read it from the first line of stdout).")
    var port: Int = 8080

    @Option(help: "Address to bind.")
    var host: String = "127.0.0.1"

    @Option(help: "Data file (JSON, the contract's format) loaded at start.")
    var data: String?

    @Option(help: "Seed for outcomes, latencies and faults: same seed and data give the same results.")
    var seed: UInt64 = 1

    @Option(name: .customLong("rate-limit"), help: "Requests per sliding second per campaign; a campaign's own rate_limit wins.")
    var rateLimit: Int = 10

    @Option(help: "Write the ledger (JSON) to this file on exit, including on SIGTERM and SIGINT.")
    var ledger: String?

    @Option(name: .customLong("time-scale"), help: "Delivery latencies are divided by this (10 = ten times faster).")
    var timeScale: Double = 1

    @Option(
        name: .customLong("latency-min"),
        help: "Shortest delivery latency after an accepted retry, seconds (before --time-scale).")
    var latencyMin: Double = 0.2

    @Option(
        name: .customLong("latency-max"), help: "Longest delivery latency after an accepted retry, seconds (before --time-scale)."
    )
    var latencyMax: Double = 2.0

    @Option(
        name: .customLong("outcome-weights"),
        help:
            "Weights of drawn outcomes for messages without an outcomes script, e.g. 'success=0.7,failure:recipient_unavailable=0.2,stuck=0.1'."
    )
    var outcomeWeights: String?

    @Option(
        name: .customLong("batch-retry-delay"),
        help:
            "A whole-batch retry answered 201 takes effect this many seconds later (before --time-scale); meanwhile its batch is 'messages_enqueuing'."
    )
    var batchRetryDelay: Double = 0

    @Option(name: .customLong("retry-after"), help: "Send 'Retry-After: N' (seconds) with every 429.")
    var retryAfter: Int?

    @Option(name: .customLong("ip-fail-campaign"), help: "Campaign whose requests get 401 invalid_ip_address_error (repeatable).")
    var ipFailCampaigns: [String] = []

    @Option(
        name: .customLong("background-rate"),
        help: "Synthetic live traffic ID=RPS using up a campaign's rate window, not recorded in the ledger (repeatable)."
    )
    var backgroundRates: [String] = []

    @Option(name: .customLong("fault-5xx-before"), help: "Rate (0-1) of 503 answers given before doing anything.")
    var fault5xxBefore: Double = 0

    @Option(
        name: .customLong("fault-5xx-after-accept"), help: "Rate (0-1) of accepted retries answered 500 (the retry still counts)."
    )
    var fault5xxAfterAccept: Double = 0

    @Option(
        name: .customLong("fault-slow"),
        help: "Rate (0-1) of answers held back --fault-slow-seconds (after the request took effect).")
    var faultSlow: Double = 0

    @Option(name: .customLong("fault-slow-seconds"), help: "How long a slow answer is held back, seconds (not scaled).")
    var faultSlowSeconds: Double = 15

    @Option(
        name: .customLong("fault-drop"),
        help: "Rate (0-1) of connections closed without an answer (after the request took effect).")
    var faultDrop: Double = 0

    @Option(name: .customLong("fault-malformed"), help: "Rate (0-1) of 200/201 answers whose JSON body is cut short.")
    var faultMalformed: Double = 0

    @Option(
        name: .customLong("log-level"), help: "Server log level on stderr (trace, debug, info, notice, warning, error, critical)."
    )
    var logLevel: String = "error"

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0...65535") }
        guard rateLimit >= 1 else { throw ValidationError("--rate-limit must be at least 1") }
        guard timeScale > 0 else { throw ValidationError("--time-scale must be > 0") }
        guard batchRetryDelay >= 0, batchRetryDelay.isFinite else { throw ValidationError("--batch-retry-delay must be >= 0") }
        guard latencyMin >= 0, latencyMax >= latencyMin else { throw ValidationError("need 0 <= --latency-min <= --latency-max") }
        for (name, rate) in [
            ("--fault-5xx-before", fault5xxBefore), ("--fault-5xx-after-accept", fault5xxAfterAccept),
            ("--fault-slow", faultSlow), ("--fault-drop", faultDrop), ("--fault-malformed", faultMalformed)
        ] where !(0...1).contains(rate) {
            throw ValidationError("\(name) must be between 0 and 1")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        _ = try parsePairs(backgroundRates, flag: "--background-rate")
        if let outcomeWeights {
            _ = try parsePairs(outcomeWeights.split(separator: ",").map(String.init), flag: "--outcome-weights")
        }
    }

    func run() async throws {
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        var options = SimulatorOptions()
        options.seed = seed
        options.defaultRateLimit = rateLimit
        options.timeScale = timeScale
        options.latencyMin = latencyMin
        options.latencyMax = latencyMax
        if let outcomeWeights {
            options.outcomeWeights = try parsePairs(
                outcomeWeights.split(separator: ",").map(String.init), flag: "--outcome-weights")
        }
        options.retryAfterSeconds = retryAfter
        options.batchRetryDelay = batchRetryDelay
        options.ipWhitelistFailureCampaigns = Set(ipFailCampaigns)
        options.backgroundTraffic = try parsePairs(backgroundRates, flag: "--background-rate")
        options.faults.error5xxBefore = fault5xxBefore
        options.faults.error5xxAfterAccept = fault5xxAfterAccept
        options.faults.slowResponse = faultSlow
        options.faults.slowResponseSeconds = faultSlowSeconds
        options.faults.dropConnection = faultDrop
        options.faults.malformedJSON = faultMalformed
        options.logLevel = Logger.Level(rawValue: logLevel) ?? .error

        let simData: SimulatorData?
        do {
            simData = try data.map(SimulatorData.load(path:))
        } catch {
            throw ValidationError("cannot load --data \(data ?? ""): \(error)")
        }

        let finalLedger = try await SimulatorServer.runService(data: simData, options: options, host: host, port: port) {
            host, port in
            // The contract: this is the first line of stdout, written unbuffered so a parent can read the port.
            FileHandle.standardOutput.write(Data("listening on \(host):\(port)\n".utf8))
        }
        if let ledger {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            try encoder.encode(finalLedger).write(to: URL(fileURLWithPath: ledger), options: .atomic)
        }
    }

    /// `KEY=NUMBER` pairs; the key may itself contain `:` (outcome weights) but not `=`.
    func parsePairs(_ items: [String], flag: String) throws -> [String: Double] {
        var result: [String: Double] = [:]
        for item in items {
            guard let eq = item.lastIndex(of: "="), let value = Double(item[item.index(after: eq)...]), value >= 0 else {
                throw ValidationError("\(flag) expects KEY=NUMBER, got '\(item)'")
            }
            result[String(item[..<eq]).trimmingCharacters(in: .whitespaces)] = value
        }
        return result
    }
}
