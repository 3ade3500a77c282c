import AsyncHTTPClient
import Foundation
import LibPQ
import Logging
import PostmanAPI
import RetryCore
import RetryJournal
import RetrySettings
import Synchronization

/// How one `run --worker` process takes part in a shared run.
public struct WorkerSettings: Sendable {
    /// Names this process in the lease table (default: host name, process id and a random number).
    public var workerId: String
    /// A lease not renewed for this long may be taken over by another worker.
    public var leaseTTL: Duration
    /// At most this many campaigns worked at once by this process (nil: as many as it can take).
    public var maxCampaigns: Int?
    /// A plain `run`: the only process on the run (no other run, no worker), taking every campaign at once.
    public var exclusive: Bool

    public init(workerId: String? = nil, leaseTTL: Duration = .seconds(15), maxCampaigns: Int? = nil) {
        // The suffix tells apart containers that share a host name and all run as pid 1.
        self.workerId = workerId ?? "\(ProcessInfo.processInfo.hostName):\(getpid()):\(UInt16.random(in: .min ... .max))"
        self.leaseTTL = leaseTTL
        self.maxCampaigns = maxCampaigns
        self.exclusive = false
    }

    /// A plain `postman-retry run`: a worker that holds the run alone and takes every campaign.
    static func plainRun() -> WorkerSettings {
        var settings = WorkerSettings(workerId: "run:\(ProcessInfo.processInfo.hostName):\(getpid())")
        settings.exclusive = true
        return settings
    }

    /// Heartbeats come this often: three chances to renew before a lease can expire.
    var heartbeatInterval: Duration { leaseTTL / 4 }
    /// This worker stops sending for a campaign this long before its lease could expire in the
    /// database, so a lease's old and new holders never send in the same second.
    var safetyMargin: Duration { min(leaseTTL / 5, .seconds(2)) }
}

extension RunSettings {
    /// The longest a request handed to the HTTP client can take to reach Postman: it waits at most
    /// `PostmanClient.connectWait` for a connection, and no request is written after its deadline
    /// (`request_timeout`), though one may be held that long once it has a connection (a channel that is not
    /// writable, a TLS-inspecting proxy that answers CONNECT itself). Takeovers of the hold or of a lease wait
    /// it out.
    public var longestSendDelay: Duration { max(PostmanClient.connectWait, requestTimeout) }
}

/// The orchestrator of both `postman-retry run` (exclusive: one process, every campaign) and
/// `postman-retry run --worker` (one of any number of processes that share one run through PostgreSQL).
///
/// - Workers hold the run in shared mode (`RunHolder`): they exclude a plain `run`, not each other.
/// - One worker at a time opens the run and selects (the gate row's setup mark); the others join it.
/// - Each campaign's rate budget is leased to one worker at a time (the journal's `campaign_leases`,
///   taken with `FOR UPDATE SKIP LOCKED`). A worker renews its leases with heartbeats and stops sending
///   for a campaign before its lease can expire; a lease whose worker died expires, and another worker
///   takes it over, waits one second so the dead worker's requests have left every 1-second window,
///   and resumes the campaign from the journal: unanswered intents are read back before anything is sent.
/// - The run completes when every campaign's lease is done; every worker then reports the whole run.
public struct RetryWorker: Sendable {
    public let job: RetryRun
    public let worker: WorkerSettings

    public init(job: RetryRun, worker: WorkerSettings) {
        self.job = job
        self.worker = worker
    }

    /// `leaseDB` carries only heartbeats, so a slow journal write never delays a renewal.
    public func run(
        db: PGConnection, leaseDB: PGConnection, stopRequested: @escaping @Sendable () -> Bool = { false }
    ) async throws -> RunResult {
        try await RetryRun.withHTTPClient(settings: job.settings, logger: job.logger) { httpClient in
            try await RetryRun.requireMigrations(db)
            try await RetryRun.requireJournalWrites(db)
            let mode: RunHolder.Mode = worker.exclusive ? .exclusive : .shared
            return try await RunHolder.holding(
                db: leaseDB, workerId: worker.workerId, mode: mode, sendDelay: job.settings.longestSendDelay, logger: job.logger,
                fallback: leaseDB === db ? nil : db
            ) { holder in
                try await run(db: db, leaseDB: leaseDB, holder: holder, httpClient: httpClient, stopRequested: stopRequested)
            }
        }
    }

    func run(
        db: PGConnection, leaseDB: PGConnection, holder: RunHolder, httpClient: HTTPClient,
        stopRequested: @escaping @Sendable () -> Bool
    ) async throws -> RunResult {
        let settings = job.settings
        var store = RunStore(db: db, table: settings.table)
        store.holder = holder.fence
        let run = try await openShared(store: store, db: db, holder: holder, stopRequested: stopRequested)
        var log = job.runLogger(run)
        log[metadataKey: "worker"] = "\(worker.workerId)"
        let leases = LeaseStore(db: leaseDB, run: run.id, workerId: worker.workerId)

        // Every campaign of the run needs its key, whichever this worker ends up working.
        let campaigns = try await store.campaignsWithOpenItems(run: run.id)
        let keys: [String: String]
        do {
            keys = try job.requireKeys(for: campaigns)
        } catch {
            if worker.exclusive { try await store.finishRun(run: run.id, status: .interrupted, error: "missing API keys") }
            throw error
        }
        // How many rows each campaign has in the table (the size of a list sweep), for every campaign at
        // once: without an index on the campaign column each count reads the whole table, and one count per
        // campaign at its start read a 2,000,000-row table a hundred times (10 s of PostgreSQL's time, the
        // last campaign starting that much later; docs/benchmarks.md). A campaign taken more than a minute
        // later (a worker with --max-campaigns, a lease taken over) is counted again, alone.
        let tableCounts: [String: Int]
        do {
            tableCounts = try await store.messageCounts(campaigns: campaigns.sorted())
        } catch {
            if worker.exclusive {
                try? await store.finishRun(run: run.id, status: .interrupted, error: "counting the campaigns' rows: \(error)")
            }
            throw error
        }
        let countedAt = ContinuousClock.now
        let client = PostmanClient(
            baseURL: settings.apiURL, httpClient: httpClient, requestTimeout: settings.requestTimeout, logger: log,
            onUnanswered: { holder.noteUnansweredRequest() })
        let context = RunContext(
            store: store, client: client, settings: settings, run: run, logger: log,
            notBefore: holder.firstSendAllowed, crashPoints: CrashPoints(environment: job.environment), signalled: stopRequested,
            holder: holder)
        log.info(worker.exclusive ? "working" : "worker joined the run", metadata: ["campaigns": "\(campaigns.count)"])

        let state = WorkerState()
        let doorbell = Doorbell()
        let started = ContinuousClock.now
        await withTaskGroup(of: Void.self) { group in
            let reporter = ProgressReporter(logger: log, live: job.liveProgress, started: started)
            var lastRenewal = ContinuousClock.now
            var nextClaim = ContinuousClock.now
            var contactLostSince: ContinuousClock.Instant?
            var rungForStop = false
            var lastHeldCount = 0
            while true {
                if stopRequested() { context.stop(.signal) }
                let stopping = context.stopReason != nil
                if stopping, !rungForStop {
                    // The campaign workers nap up to a second between their own deadlines: wake them now.
                    rungForStop = true
                    for campaignWorker in state.active { await campaignWorker.ring() }
                }
                state.dropFinished()
                // After a stop, heartbeats go on until the campaign workers have settled what they sent.
                if stopping && state.held.isEmpty { break }
                let now = ContinuousClock.now
                // A plain run with nothing left to work looks at once: the run may be complete. So does one
                // whose campaign ended: whatever frees a lease then is taken without the 10 s wait below.
                let heldCount = state.held.count
                if worker.exclusive, heldCount == 0 || heldCount < lastHeldCount { nextClaim = min(nextClaim, now) }
                lastHeldCount = heldCount

                if now - lastRenewal >= worker.heartbeatInterval, !state.held.isEmpty {
                    let held = state.held
                    do {
                        let kept = try await leases.renew(held, ttl: worker.leaseTTL)
                        contactLostSince = nil
                        lastRenewal = now
                        state.extend(kept, until: now + worker.leaseTTL - worker.safetyMargin)
                        let lost = Set(held).subtracting(kept).map(\.campaign)
                        if !lost.isEmpty {
                            context.stop(
                                .leaseLost("the lease of \(lost.sorted().joined(separator: ", ")) expired and was taken over"))
                        }
                    } catch {
                        // The lease guard stops sending before the leases can expire; give up after one TTL.
                        let since = contactLostSince ?? now
                        contactLostSince = since
                        log.warning("lease heartbeat failed", metadata: ["error": "\(error)"])
                        if now - since > worker.leaseTTL {
                            context.stop(.database("could not renew the campaign leases: \(error)", status: .temporary))
                        }
                    }
                }

                if !stopping, now >= nextClaim, worker.maxCampaigns.map({ state.held.count < $0 }) ?? true {
                    // One lease per step, so workers started together share the campaigns; a plain run
                    // takes them all at once.
                    nextClaim = worker.exclusive ? now : now + .milliseconds(500)
                    do {
                        if let claim = try await leases.claim(ttl: worker.leaseTTL, except: state.held.map(\.campaign)) {
                            let held = LeaseStore.Held(campaign: claim.campaign, epoch: claim.epoch)
                            state.claimed(held, validUntil: now + worker.leaseTTL - worker.safetyMargin)
                            if let previous = claim.takenFrom {
                                log.notice(
                                    "took over an expired lease",
                                    metadata: ["campaign": "\(claim.campaign)", "from": "\(previous)"])
                            }
                            let counted =
                                campaigns.contains(held.campaign) && now - countedAt < .seconds(60)
                                ? tableCounts[held.campaign] ?? 0 : nil
                            group.addTask {
                                await work(
                                    held, key: keys[held.campaign], messagesInTable: counted, tookOver: claim.takenFrom != nil,
                                    context: context, leases: leases, state: state)
                                doorbell.ring()
                            }
                            continue
                        }
                        // Nothing to take now. A lease may still free up (its holder died, or a campaign was
                        // opened again): look again later, not on every pass of this loop (a plain run of three
                        // campaigns asked twenty times a second; issue 17).
                        // Alone on the run, nobody else frees a lease while this process holds some: look
                        // again when one of its own ends (above), else every 10 s (it was every second: one
                        // of the fourteen transactions a second of a 3 x 2,000 run; issue 17).
                        nextClaim = now + (worker.exclusive ? .seconds(10) : .milliseconds(500))
                        if state.held.isEmpty, try await leases.openCampaigns() == 0 {
                            // Every lease is done. The journal has the last word: a message still open
                            // (it should not happen) opens its campaign's lease again.
                            if try await store.completeRunIfRunning(run: run.id) { break }
                            if worker.exclusive {
                                // Alone on the run, nobody else will settle them: leave them to the next
                                // run rather than loop (it should not happen).
                                let open = try await store.openCount(run: run.id)
                                log.error(
                                    "messages still open after the campaigns ended; the run is left for the next one",
                                    metadata: ["open": "\(open)"])
                                context.stop(
                                    .database(
                                        "\(open) messages were still open when the workers ended; the next run resumes them",
                                        status: .temporary))
                                continue
                            }
                            log.warning("every lease is done but the journal has open messages; working them again")
                            try await leases.ensureLeases()
                        }
                    } catch {
                        log.warning("could not take a campaign lease", metadata: ["error": "\(error)"])
                    }
                }
                if reporter.due() {
                    var snapshots: [CampaignProgress] = []
                    for campaignWorker in state.active { snapshots.append(await campaignWorker.progress()) }
                    reporter.report(snapshots)
                }
                // Until the next heartbeat or claim is due, a campaign worker ends (it rings), or a quarter
                // second; at least 50 ms, so a failing heartbeat or claim is not retried in a hot loop. A
                // stop (a signal, a lost hold) is seen here within that quarter second and rung through.
                var wake = ContinuousClock.now + .milliseconds(250)
                if !state.held.isEmpty { wake = min(wake, lastRenewal + worker.heartbeatInterval) }
                if !stopping { wake = min(wake, nextClaim) }
                await doorbell.sleep(until: max(wake, ContinuousClock.now + .milliseconds(50)))
            }
            await group.waitForAll()
            reporter.finish()
        }

        let stop = context.stopReason
        let unfinished = state.claimedNotDone
        if stop != nil, !unfinished.isEmpty {
            // Free at once for the other workers (a lease taken over is not ours: the update skips it).
            try? await leases.release(unfinished)
        }
        // A process whose hold was taken away leaves the run's record to the run that took it.
        if let stop, !Self.holdWasLost(stop) { try? await leases.markInterruptedIfLast(error: stop.message) }
        let status: RunStatus = stop == nil ? .completed : worker.exclusive ? .interrupted : .running
        var result = try await job.result(of: run, status: status, stop: stop, db: db, logger: log)
        result.peakLifecyclesPerCampaign = context.peakLifecycles
        result.campaignLoopPasses = context.loopPasses
        log.info("most messages one campaign held in memory", metadata: ["messages": "\(context.peakLifecycles)"])
        return result
    }

    /// How long a worker that took a campaign's lease waits before its first request for it: one second,
    /// so the previous holder's requests have left every 1-second window. A lease taken from a holder that
    /// stopped renewing it (it may be alive, cut off from the database) adds the longest a request that
    /// holder handed to its HTTP client before it stopped can take to reach Postman (`longestSendDelay`).
    static func leaseWait(tookOver: Bool, sendDelay: Duration) -> Duration {
        .seconds(1) + (tookOver ? sendDelay : .zero)
    }

    private static func holdWasLost(_ stop: StopReason) -> Bool {
        if case .holdLost = stop { return true }
        return false
    }

    /// Opens the shared run under the setup lock: the first worker starts it and selects, the others
    /// find it running and join.
    private func openShared(
        store: RunStore, db: PGConnection, holder: RunHolder, stopRequested: @Sendable () -> Bool
    ) async throws -> RunRecord {
        while !(try await holder.tryBeginSetup()) {
            if stopRequested() { throw JobError(.temporary, "stopped by a signal while waiting to join the run") }
            try await LoopTimer.sleep(for: .milliseconds(100))
        }
        do {
            let run = try await job.open(store: store, db: db)
            try await LeaseStore(db: db, run: run.id, workerId: worker.workerId).ensureLeases()
            await holder.endSetup()
            return run
        } catch {
            await holder.endSetup()
            throw error
        }
    }

    /// Works one leased campaign to its end, then marks the lease done (unless the run is stopping).
    /// Its journal writes are fenced by the lease.
    private func work(
        _ held: LeaseStore.Held, key: String?, messagesInTable: Int?, tookOver: Bool, context: RunContext,
        leases: LeaseStore, state: WorkerState
    ) async {
        let campaign = held.campaign
        defer { state.finish(held) }
        do {
            let chunkSize = max(1, context.settings.journalChunk)
            let first = try await context.store.firstItems(run: context.run.id, campaign: campaign, limit: chunkSize)
            if !first.items.isEmpty {
                guard let key else {
                    // Checked for every campaign before any lease was taken; a campaign that appeared since
                    // stops this worker rather than spin on a lease it cannot work.
                    context.stop(.database("no API key for campaign \(campaign)", status: .failure))
                    return
                }
                // nil: a campaign not counted with the others at the start (opened again since), or counted
                // too long ago. The run's own open messages are a floor (rows deleted from the table are
                // still in Postman's list).
                var counted = messagesInTable
                if counted == nil { counted = try await context.store.messageCounts(campaigns: [campaign])[campaign] }
                let campaignWorker = CampaignWorker(
                    campaign: campaign, apiKey: key, context: context, first: first, chunkSize: chunkSize,
                    messagesInTable: max(counted ?? 0, first.items.count),
                    notBefore: max(
                        .now + Self.leaseWait(tookOver: tookOver, sendDelay: context.settings.longestSendDelay),
                        context.holder?.firstSendAllowed ?? .now),
                    leaseValid: { (context.holder?.mayStillSend() ?? true) && state.mayStillSend(held) },
                    // Alone on the run, the hold's fence (in every journal write) is enough: nobody can take a
                    // campaign lease without first taking the hold. Without a lease fence the plain run's
                    // campaigns share one journal write per flush (`JournalBatcher`).
                    fence: worker.exclusive
                        ? nil : LeaseFence(run: context.run.id, campaign: campaign, workerId: leases.workerId, epoch: held.epoch))
                state.started(held, campaignWorker)
                await campaignWorker.run()
            }
            if context.stopReason == nil {
                try await leases.markDone(held)
            } else {
                // Stopping: free this campaign for the other workers as soon as its own work has ended,
                // not after every campaign of this worker has (the 8 s signal backstop may come first).
                try await leases.release([held])
            }
            state.done(held)
        } catch {
            let failure = JobError.classify(error)
            context.stop(.database("campaign \(campaign): \(failure.message)", status: failure.status))
        }
    }
}

/// The leases one worker process holds, shared by its coordinator loop and its campaign workers.
final class WorkerState: Sendable {
    private struct Leases {
        /// Leases being worked, and until when each may still send (the lease guard).
        var validUntil: [LeaseStore.Held: ContinuousClock.Instant] = [:]
        /// Leases whose work ended; forgotten at the coordinator's next step.
        var finished: Set<LeaseStore.Held> = []
        var claimedNotDone: Set<LeaseStore.Held> = []
        var active: [LeaseStore.Held: CampaignWorker] = [:]
    }
    private let leases = Mutex(Leases())

    /// Leases taken and still being worked.
    var held: [LeaseStore.Held] { leases.withLock { $0.validUntil.keys.sorted { $0.campaign < $1.campaign } } }
    var claimedNotDone: [LeaseStore.Held] { leases.withLock { Array($0.claimedNotDone) } }
    var active: [CampaignWorker] {
        leases.withLock { state in state.active.keys.sorted { $0.campaign < $1.campaign }.compactMap { state.active[$0] } }
    }

    func claimed(_ held: LeaseStore.Held, validUntil: ContinuousClock.Instant) {
        leases.withLock { state in
            state.validUntil[held] = validUntil
            state.claimedNotDone.insert(held)
        }
    }

    /// A heartbeat renewed these leases.
    func extend(_ kept: some Sequence<LeaseStore.Held>, until: ContinuousClock.Instant) {
        leases.withLock { state in
            for held in kept where state.validUntil[held] != nil { state.validUntil[held] = until }
        }
    }

    func mayStillSend(_ held: LeaseStore.Held) -> Bool {
        leases.withLock { $0.validUntil[held].map { ContinuousClock.now < $0 } ?? false }
    }

    func started(_ held: LeaseStore.Held, _ worker: CampaignWorker) { leases.withLock { $0.active[held] = worker } }
    func done(_ held: LeaseStore.Held) { leases.withLock { _ = $0.claimedNotDone.remove(held) } }
    func finish(_ held: LeaseStore.Held) { leases.withLock { _ = $0.finished.insert(held) } }

    /// Forgets leases whose work ended (done, or to be released at the stop).
    func dropFinished() {
        leases.withLock { state in
            for held in state.finished {
                state.validUntil[held] = nil
                state.active[held] = nil
            }
            state.finished = []
        }
    }
}
