import AsyncHTTPClient
import Foundation
import LibPQ
import Logging
import NIOCore
import PostmanAPI
import RetryCore
import RetryJournal
import RetrySettings

/// The result of `postman-retry run`.
public struct RunResult: Sendable {
    public var runId: Int64
    public var status: String
    public var exitStatus: ExitStatus
    public var message: String?
    public var summary: RunSummary
    /// The most messages one campaign worker held in memory at once: about one and a half journal chunks
    /// however many rows were selected.
    public var peakLifecyclesPerCampaign = 0
    /// How many times the campaign workers' loops looked, all together: a loop that naps a few
    /// milliseconds a pass while it waits shows here (tests hold the journal back and count).
    public var campaignLoopPasses = 0
}

/// `postman-retry run`: takes the run lock, resumes or starts a run, selects, works every campaign
/// concurrently inside its own rate budget, and records everything in the journal.
public struct RetryRun: Sendable {
    public let settings: RunSettings
    public let logger: Logger
    public let environment: [String: String]
    /// Redraw a per-campaign table on stderr (a terminal) instead of periodic log lines.
    public let liveProgress: Bool

    public init(
        settings: RunSettings, logger: Logger, environment: [String: String] = ProcessInfo.processInfo.environment,
        liveProgress: Bool = false
    ) {
        self.settings = settings
        self.logger = logger
        self.environment = environment
        self.liveProgress = liveProgress
    }

    /// Runs the job on `db`: a worker that holds the run alone and takes every campaign (`RetryWorker`,
    /// the one orchestrator of both `run` and `run --worker`). `holdDB` carries the heartbeats of the
    /// run's hold and the campaign leases, so a slow journal statement never delays them; without it
    /// they share `db`. `stopRequested` is polled for SIGINT/SIGTERM.
    public func run(
        db: PGConnection, holdDB: PGConnection? = nil, stopRequested: @escaping @Sendable () -> Bool = { false }
    ) async throws -> RunResult {
        try await RetryWorker(job: self, worker: .plainRun()).run(db: db, leaseDB: holdDB ?? db, stopRequested: stopRequested)
    }

    /// Our own client (`HTTPClient.Configuration.postmanRetry`), shut down when the run ends. It goes through
    /// the proxy of `settings.network` (CONNECT for https) unless NO_PROXY exempts Postman's host, and
    /// trusts its CA files on top of the system's store. Before anything else, Postman's certificate is
    /// checked with a bare TLS handshake: one that is not trusted or not for the host stops the command
    /// here with exit 69, before the run lock, the journal or any request (docs/network.md).
    static func withHTTPClient<T: Sendable>(
        settings: RunSettings, logger: Logger, _ body: (HTTPClient) async throws -> T
    ) async throws -> T {
        var configuration = HTTPClient.Configuration.postmanRetry
        // A key for the other environment would be refused on every call (or, worse, act on production).
        try settings.apiKeys.requireMatchingEnvironment(apiURL: settings.apiURL)
        do {
            try settings.network.apply(to: &configuration, baseURL: settings.apiURL)
            try await settings.network.checkCertificate(of: settings.apiURL, logger: logger)
        } catch let error as NetworkSettingsError {
            throw JobError(.usage, error.description)
        } catch let error as CertificateRejected {
            throw JobError(.unavailable, "cannot reach Postman safely: \(error); nothing was sent")
        }
        if let url = URL(string: settings.apiURL), let proxy = settings.network.proxy(for: url) {
            logger.info("reaching Postman through a proxy", metadata: ["proxy": "\(proxy)"])
        }
        let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            let result = try await body(httpClient)
            try? await httpClient.shutdown()
            return result
        } catch {
            try? await httpClient.shutdown()
            throw error
        }
    }

    static func requireMigrations(_ db: PGConnection) async throws {
        let missing = try await Migrator().pending(db)
        guard missing.isEmpty else {
            throw JobError(
                .usage,
                "the postman_retry schema is not up to date (missing \(missing.joined(separator: ", "))); run `postman-retry migrate` first"
            )
        }
    }

    /// The job's role must read and write every table of its own schema: a missing grant found half-way
    /// (after retries went out) stopped the run with exit 1. Exit 64 before anything, naming the grant.
    static func requireJournalWrites(_ db: PGConnection) async throws {
        let schema = Migrator.schema
        let rows = try await db.query(
            """
            SELECT current_user::text AS role, has_schema_privilege(\(schema), 'USAGE') AS usage,
                   coalesce(string_agg(c.relname::text, ', ' ORDER BY c.relname) FILTER (WHERE NOT (
                       has_table_privilege(c.oid, 'SELECT') AND has_table_privilege(c.oid, 'INSERT')
                       AND has_table_privilege(c.oid, 'UPDATE') AND has_table_privilege(c.oid, 'DELETE'))), '') AS lacking
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = \(schema) AND c.relkind IN ('r', 'p')
            """)
        guard let row = rows.first else { return }
        let role: String = try row.decode("role")
        let usage: Bool = try row.decode("usage")
        let lacking: String = try row.decode("lacking")
        guard usage, lacking.isEmpty else {
            let what = usage ? "SELECT, INSERT, UPDATE and DELETE on \(schema).\(lacking)" : "USAGE on schema \(schema)"
            throw JobError(
                .usage,
                "the role \(role) lacks \(what), which the job needs for its own bookkeeping; grant it (or run the job as "
                    + "the role that ran `postman-retry migrate`); nothing was sent")
        }
    }

    /// Resumes the unfinished run or starts one: carries pending messages over and selects (again,
    /// when an earlier selection was interrupted).
    func open(store: RunStore, db: PGConnection) async throws -> RunRecord {
        let run = try await store.openRun(scope: settings.scope)
        runLogger(run).info(
            run.resumed ? "resuming unfinished run" : "run started", metadata: ["table": "\(settings.table.displayName)"])
        let now = Date()
        try await store.carryOverPending(
            run: run.id, campaigns: run.scope.campaigns, deadline: now.addingTimeInterval(settings.pollTimeout.seconds),
            neverFinalAfter: settings.neverFinalAfter)
        if !run.selectionDone {
            try await select(run: run, store: store, db: db, now: now)
        }
        try await store.refreshStatistics()
        return run
    }

    func runLogger(_ run: RunRecord) -> Logger {
        var log = logger
        log[metadataKey: "run"] = "\(run.id)"
        return log
    }

    /// Every campaign with work needs its key before anything is sent.
    func requireKeys(for campaigns: some Collection<String>) throws -> [String: String] {
        var keys: [String: String] = [:]
        var missingKeys: [String] = []
        for campaign in campaigns.sorted() {
            if let key = settings.apiKeys.key(for: campaign) { keys[campaign] = key } else { missingKeys.append(campaign) }
        }
        guard missingKeys.isEmpty else {
            throw JobError(
                .usage,
                "no API key for campaign(s) \(missingKeys.joined(separator: ", ")): set "
                    + settings.apiKeys.variablesToSet(for: missingKeys).joined(separator: ", ")
                    + (settings.apiKeys.campaignVariables.isEmpty ? " (or POSTMAN_API_KEY for all)" : ""))
        }
        return keys
    }

    /// The run's summary as recorded, with the stop reason and the quiet-hours note.
    func result(of run: RunRecord, status: RunStatus, stop: StopReason?, db: PGConnection, logger log: Logger)
        async throws -> RunResult
    {
        let summary = try await RunSummary.load(db: db, runId: run.id)
        log.info(
            "run \(status.rawValue)",
            metadata: [
                SummaryCount.retried.name: "\(summary.counts.retried)", SummaryCount.selected.name: "\(summary.counts.selected)"
            ])
        var message = stop?.message
        if summary.deferredByQuietHours > 0, let quiet = settings.quietHours {
            let note =
                "quiet hours (\(quiet)): \(summary.deferredByQuietHours) selected messages were not sent and are left for the next run"
            message = message.map { $0 + "; " + note } ?? note
        }
        return RunResult(
            runId: run.id, status: status.rawValue, exitStatus: stop?.exitStatus ?? .completed, message: message,
            summary: summary)
    }

    private func select(run: RunRecord, store: RunStore, db: PGConnection, now: Date) async throws {
        try await store.resetSelectionCounts(run: run.id)
        let selector = Selector(table: settings.table, scope: run.scope, now: now)
        let logger = self.logger
        let selectedBefore = try await store.selectedCount(run: run.id)
        let counts = try await selector.scan(
            db, rules: settings.rules, alreadySelected: selectedBefore,
            journaled: { ids in try await store.journaledKeys(run: run.id, ids: ids) },
            onPage: { selected, malformed in
                let notRecorded = try await store.recordSelected(run: run.id, rows: selected, malformed: malformed)
                let named = notRecorded.filter { !Selector.sameKey($0.twinKey, $0.row.key) }.map {
                    Selector.duplicate($0.row, of: $0.twinKey)
                }
                if !named.isEmpty { try await store.recordSelected(run: run.id, rows: [], malformed: named) }
                for row in malformed + named {
                    logger.warning(
                        "malformed row skipped",
                        metadata: ["row": "\(row.key)", "field": "\(row.field)", "problem": "\(row.problem)"]
                    )
                }
                return notRecorded
            })
        try await store.finishSelection(run: run.id, skipped: counts.mapValues(\.skipped))
    }
}
