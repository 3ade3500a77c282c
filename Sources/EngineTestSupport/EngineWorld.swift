import Foundation
import LibPQ
import Logging
import PostgresTestSupport
import PostmanSimulator
import RetryCore
import RetryJob
import RetryJournal
import RetrySettings
import SampleData

/// One test scenario's world, shared by the engine, report and metrics tests: a fresh database holding
/// the reference table with sample rows (migrated), and a simulator on loopback loaded with the
/// matching Postman state.
public struct EngineWorld: Sendable {
    public let db: PGConnection
    public let url: String
    public let sim: SimulatorServer
    public let data: SampleData

    /// A world around an existing database and simulator (scenarios that build their own table).
    public init(db: PGConnection, url: String, sim: SimulatorServer, data: SampleData) {
        self.db = db
        self.url = url
        self.sim = sim
        self.data = data
    }

    /// The repository (for sql/ and docs/ files and the built binary).
    public static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// `options` nil: the simulator with `seed` and 20× time (outcomes in 10-100 ms).
    public static func make(
        databasePrefix: String = "engine", campaigns: Int = 2, messages: Int = 18, mixed: Bool = true, seed: UInt64 = 11,
        rateLimit: Int? = nil, campaignPrefix: String = "campaign", options: SimulatorOptions? = nil, server: String = "",
        staleShare: Double = 0, history: Int = 0, adjust: (inout SampleData) -> Void = { _ in }
    ) async throws -> EngineWorld {
        let (db, url) = try await TestDatabase.connect(prefix: databasePrefix, server: server)
        for file in ["sql/reference-schema.sql", "sql/recommended-index.sql"] {
            let sql = try String(contentsOf: repoRoot.appendingPathComponent(file), encoding: .utf8)
            try await db.executeScript(PGQuery(unsafeSQL: sql))
        }
        var data = SampleData.generate(
            campaigns: campaigns, messagesPerCampaign: messages, seed: seed, mixed: mixed, rateLimit: rateLimit,
            campaignPrefix: campaignPrefix, staleShare: staleShare, history: history)
        adjust(&data)
        try await db.copyIn(
            PGQuery(
                unsafeSQL: "COPY outbound_messages (\(SampleData.copyColumns.joined(separator: ", "))) FROM STDIN (FORMAT csv)"),
            rows: data.rows.map(\.copyFields))
        _ = try await Migrator().migrate(db)
        var simOptions = options ?? SimulatorOptions()
        if options == nil {
            simOptions.seed = seed
            simOptions.timeScale = 20
        }
        let sim = try await SimulatorServer.start(data: data.simulator, options: simOptions)
        return EngineWorld(db: db, url: url, sim: sim, data: data)
    }

    /// `POSTMAN_API_KEY_<CAMPAIGN>` for every campaign of the simulator.
    public var keysEnvironment: [String: String] {
        var env: [String: String] = [:]
        for campaign in data.simulator.campaigns { env[apiKeyVariableName(campaignId: campaign.id)] = campaign.apiKey }
        return env
    }

    /// Settings for an in-process run, with short poll intervals for the simulator's fast time.
    public func settings(
        pollTimeout: Duration = .seconds(4), rateLimits: [String: Int] = [:], keys: [String: String]? = nil
    ) -> RunSettings {
        RunSettings(
            scope: RunScope(), apiURL: sim.baseURL, apiKeys: APIKeys(environment: keys ?? keysEnvironment),
            campaignRateLimits: rateLimits, pollTimeout: pollTimeout, requestTimeout: .seconds(3),
            firstPollDelay: .milliseconds(500), maxPollInterval: .seconds(2))
    }

    public static var quietLogger: Logger {
        var logger = Logger(label: "test.engine")
        logger.logLevel = .error
        return logger
    }

    /// A run in this process (the binary's tests launch `postman-retry` instead).
    /// Its hold's heartbeats go on a connection of their own, as the binary's do.
    /// `stopRequested` stands for SIGTERM: polled by the run, as the binary's signal flag is.
    public func run(_ settings: RunSettings, stopRequested: @escaping @Sendable () -> Bool = { false }) async throws
        -> RunResult
    {
        let holdDB = try await PGConnection.connect(PGConfiguration(url: url), logger: Self.quietLogger)
        do {
            let result = try await RetryRun(settings: settings, logger: Self.quietLogger, environment: [:]).run(
                db: db, holdDB: holdDB, stopRequested: stopRequested)
            await holdDB.close()
            return result
        } catch {
            await holdDB.close()
            throw error
        }
    }

    public struct RowState: Equatable, Sendable, CustomStringConvertible {
        public var status: String
        public var retryCount: Int
        public var errorCode: String?
        public var description: String { "\(status)/\(retryCount)/\(errorCode ?? "NULL")" }

        public init(status: String, retryCount: Int, errorCode: String?) {
            self.status = status
            self.retryCount = retryCount
            self.errorCode = errorCode
        }
    }

    /// The agency table as it is now, by message id.
    public func table() async throws -> [String: RowState] {
        var states: [String: RowState] = [:]
        for row in try await db.query("SELECT message_id, status, retry_count, error_code FROM outbound_messages") {
            states[try row.decode("message_id")] = RowState(
                status: try row.decode("status"), retryCount: try row.decode("retry_count"),
                errorCode: try row.optional("error_code"))
        }
        return states
    }

    public func kind(of messageId: String) -> SampleData.Kind? { data.rows.first { $0.messageId == messageId }?.kind }

    public func stop() async {
        await sim.stop()
        await db.close()
    }
}

extension RunSummary.Counts {
    /// The identities CONTRACT.md section 5 promises.
    public var addsUp: Bool {
        selected == retried + exhausted + notFound + reconciled + batchNotRetryable + rejected + conflict
            && retried == succeeded + failed + pending && skipped == skippedByReason.values.reduce(0, +)
    }
}

/// A test fixture built around an `EngineWorld`: its parts, without forwarding each one by hand.
public protocol EngineWorldFixture {
    var world: EngineWorld { get }
}

extension EngineWorldFixture {
    public var db: PGConnection { world.db }
    public var url: String { world.url }
    public var sim: SimulatorServer { world.sim }
    public var data: SampleData { world.data }
    public var keysEnvironment: [String: String] { world.keysEnvironment }
    public static var repoRoot: URL { EngineWorld.repoRoot }
}
