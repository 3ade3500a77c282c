import AsyncHTTPClient
import Foundation
import LibPQ
import Logging
import NIOCore
import PostmanAPI
import RetryCore
import RetrySettings

/// The result of `postman-retry run`.
public struct RunResult: Sendable {
    public var runId: Int64
    public var status: String
    public var exitStatus: ExitStatus
    public var message: String?
    public var summary: RunSummary
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

    /// Runs the job on `db`. `stopRequested` is polled for SIGINT/SIGTERM.
    public func run(db: PGConnection, stopRequested: @escaping @Sendable () -> Bool = { false }) async throws -> RunResult {
        try await Self.withHTTPClient(settings: settings, logger: logger) { httpClient in
            try await run(db: db, httpClient: httpClient, stopRequested: stopRequested)
        }
    }

    /// Our own client: enough connections per host that requests are never queued inside the client
    /// (a queue there would release them in bursts), and shut down when the run ends. It goes through
    /// the proxy of `settings.network` (CONNECT for https) unless NO_PROXY exempts Postman's host, and
    /// trusts its CA files on top of the system's store. Before anything else, Postman's certificate is
    /// checked with a bare TLS handshake: one that is not trusted or not for the host stops the command
    /// here with exit 69, before the run lock, the journal or any request (docs/network.md).
    static func withHTTPClient<T: Sendable>(
        settings: RunSettings, logger: Logger, _ body: (HTTPClient) async throws -> T
    ) async throws -> T {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 256)
        configuration.timeout = .init(connect: .seconds(5))
        // Postman does not redirect; following one would send a second request on one pacer slot.
        configuration.redirectConfiguration = .disallow
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

    func run(db: PGConnection, httpClient: HTTPClient, stopRequested: @escaping @Sendable () -> Bool)
        async throws -> RunResult
    {
        let store = RunStore(db: db, table: settings.table)
        try await Self.requireMigrations(db)
        guard try await store.tryLock() else {
            throw JobError(.temporary, "another postman-retry run (or a set of `run --worker` processes) holds the lock; try again later")
        }
        let lockTakenAt = ContinuousClock.now
        defer { Task { await store.unlock() } }

        let run = try await open(store: store, db: db)
        let log = runLogger(run)
        let items = try await store.openItems(run: run.id)
        let byCampaign = Dictionary(grouping: items, by: \.campaignId)
        let keys: [String: String]
        do {
            keys = try requireKeys(for: byCampaign.keys)
        } catch {
            try await store.finishRun(run: run.id, status: "interrupted", error: "missing API keys")
            throw error
        }
        let tableCounts = try await store.messageCounts(campaigns: Array(byCampaign.keys))

        let client = PostmanClient(
            baseURL: settings.apiURL, httpClient: httpClient, requestTimeout: settings.requestTimeout, logger: log)
        let context = RunContext(
            store: store, client: client, settings: settings, run: run, logger: log,
            notBefore: lockTakenAt + .seconds(1), crashPoints: CrashPoints(environment: environment), signalled: stopRequested)
        let workers = byCampaign.keys.sorted().map { campaign in
            CampaignWorker(
                campaign: campaign, apiKey: keys[campaign]!, context: context, items: byCampaign[campaign]!,
                messagesInTable: tableCounts[campaign] ?? byCampaign[campaign]!.count)
        }
        log.info("working", metadata: ["campaigns": "\(workers.count)", "messages": "\(items.count)"])

        let started = ContinuousClock.now
        let progressLogger = log
        let liveProgress = self.liveProgress
        await withTaskGroup(of: Void.self) { group in
            for worker in workers { group.addTask { await worker.run() } }
            // Watches for signals and reports progress while the workers run.
            group.addTask {
                let reporter = ProgressReporter(logger: progressLogger, live: liveProgress, started: started)
                while !Task.isCancelled {
                    if stopRequested() { context.stop(.signal) }
                    if reporter.due() {
                        var snapshots: [CampaignProgress] = []
                        for worker in workers { snapshots.append(await worker.progress()) }
                        reporter.report(snapshots)
                    }
                    try? await Task.sleep(for: .milliseconds(50))
                }
                reporter.finish()
            }
            for _ in workers { await group.next() }
            group.cancelAll()
        }

        var stop = context.stopReason
        // Never `completed` with a message still open (quiet hours leave theirs out of the run): the
        // next run resumes it rather than lose it.
        if stop == nil, case let open = try await store.openCount(run: run.id), open > 0 {
            log.error("messages still open after the workers ended; the run is left for the next one", metadata: ["open": "\(open)"])
            stop = .database("\(open) messages were still open when the workers ended; the next run resumes them", transient: true)
        }
        let status = stop == nil ? "completed" : "interrupted"
        try await store.finishRun(run: run.id, status: status, error: stop?.message)
        return try await result(of: run, status: status, stop: stop, db: db, logger: log)
    }

    static func requireMigrations(_ db: PGConnection) async throws {
        let missing = try await Migrator().pending(db)
        guard missing.isEmpty else {
            throw JobError(.usage, "the postman_retry schema is not up to date (missing \(missing.joined(separator: ", "))); run `postman-retry migrate` first")
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
    func result(of run: RunRecord, status: String, stop: StopReason?, db: PGConnection, logger log: Logger)
        async throws -> RunResult
    {
        let summary = try await RunSummary.load(db: db, runId: run.id)
        log.info("run \(status)", metadata: ["retried": "\(summary.counts.retried)", "selected": "\(summary.counts.selected)"])
        var message = stop?.message
        if summary.deferredByQuietHours > 0, let quiet = settings.quietHours {
            let note = "quiet hours (\(quiet)): \(summary.deferredByQuietHours) selected messages were not sent and are left for the next run"
            message = message.map { $0 + "; " + note } ?? note
        }
        return RunResult(
            runId: run.id, status: status, exitStatus: stop?.exitStatus ?? .completed, message: message,
            summary: summary)
    }

    private func select(run: RunRecord, store: RunStore, db: PGConnection, now: Date) async throws {
        try await store.resetSelectionCounts(run: run.id)
        let already = try await store.journaledIds(run: run.id)
        let selector = Selector(table: settings.table, scope: run.scope, now: now)
        let logger = self.logger
        let selectedBefore = try await store.selectedCount(run: run.id)
        let counts = try await selector.scan(db, rules: settings.rules, alreadySelected: selectedBefore, exclude: already) {
            selected, malformed in
            for row in malformed {
                logger.warning(
                    "malformed row skipped", metadata: ["row": "\(row.key)", "field": "\(row.field)", "problem": "\(row.problem)"])
            }
            try await store.recordSelected(run: run.id, rows: selected, malformed: malformed)
        }
        try await store.finishSelection(run: run.id, counts: counts)
    }
}
