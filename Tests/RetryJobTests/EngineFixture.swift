import Foundation
import LibPQ
import Logging
import PostgresTestSupport
import PostmanSimulator
import RetryCore
import RetryJob
import SampleData

/// One scenario's world: a fresh database holding the reference table with sample rows (migrated),
/// and a simulator on loopback loaded with the matching Postman state.
struct EngineFixture {
    let db: PGConnection
    let url: String
    let sim: SimulatorServer
    let data: SampleData

    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func make(
        campaigns: Int = 2, messages: Int = 18, mixed: Bool = true, seed: UInt64 = 11, rateLimit: Int? = nil,
        options: SimulatorOptions? = nil, server: String = "", adjust: (inout SampleData) -> Void = { _ in }
    ) async throws -> EngineFixture {
        let (db, url) = try await TestDatabase.connect(prefix: "engine", server: server)
        for file in ["sql/reference-schema.sql", "sql/recommended-index.sql"] {
            let sql = try String(contentsOf: repoRoot.appendingPathComponent(file), encoding: .utf8)
            try await db.executeScript(PGQuery(unsafeSQL: sql))
        }
        var data = SampleData.generate(
            campaigns: campaigns, messagesPerCampaign: messages, seed: seed, mixed: mixed, rateLimit: rateLimit)
        adjust(&data)
        try await db.copyIn(
            PGQuery(unsafeSQL: "COPY outbound_messages (\(SampleData.copyColumns.joined(separator: ", "))) FROM STDIN (FORMAT csv)"),
            rows: data.rows.map(\.copyFields))
        _ = try await Migrator().migrate(db)
        var simOptions = options ?? SimulatorOptions()
        if options == nil {
            simOptions.seed = seed
            simOptions.timeScale = 20
        }
        let sim = try await SimulatorServer.start(data: data.simulator, options: simOptions)
        return EngineFixture(db: db, url: url, sim: sim, data: data)
    }

    var keysEnvironment: [String: String] {
        var env: [String: String] = [:]
        for campaign in data.simulator.campaigns { env[apiKeyVariableName(campaignId: campaign.id)] = campaign.apiKey }
        return env
    }

    func settings(
        pollTimeout: Duration = .seconds(4), rateLimits: [String: Int] = [:], keys: [String: String]? = nil
    ) -> RunSettings {
        RunSettings(
            scope: RunScope(), apiURL: sim.baseURL, apiKeys: APIKeys(environment: keys ?? keysEnvironment),
            campaignRateLimits: rateLimits, pollTimeout: pollTimeout, requestTimeout: .seconds(3),
            firstPollDelay: .milliseconds(500), maxPollInterval: .seconds(2))
    }

    static var quietLogger: Logger {
        var logger = Logger(label: "test.engine")
        logger.logLevel = .error
        return logger
    }

    func run(_ settings: RunSettings) async throws -> RunResult {
        try await RetryRun(settings: settings, logger: Self.quietLogger, environment: [:]).run(db: db)
    }

    struct RowState: Equatable, CustomStringConvertible {
        var status: String
        var retryCount: Int
        var errorCode: String?
        var description: String { "\(status)/\(retryCount)/\(errorCode ?? "NULL")" }
    }

    /// The agency table as it is now, by message id.
    func table() async throws -> [String: RowState] {
        var states: [String: RowState] = [:]
        for row in try await db.query("SELECT message_id, status, retry_count, error_code FROM outbound_messages") {
            states[try row.decode("message_id")] = RowState(
                status: try row.decode("status"), retryCount: try row.decode("retry_count"),
                errorCode: try row.optional("error_code"))
        }
        return states
    }

    func kind(of messageId: String) -> SampleData.Kind? { data.rows.first { $0.messageId == messageId }?.kind }

    func stop() async {
        await sim.stop()
        await db.close()
    }
}

extension RunSummary.Counts {
    /// The identities CONTRACT.md section 5 promises.
    var addsUp: Bool {
        selected == retried + exhausted + notFound + reconciled + batchNotRetryable + rejected + conflict
            && retried == succeeded + failed + pending && skipped == skippedByReason.values.reduce(0, +)
    }
}
