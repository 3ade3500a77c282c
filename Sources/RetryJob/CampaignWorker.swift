import Foundation
import Logging
import PostmanAPI
import RetryCore
import RetryJournal
import RetrySettings
import Synchronization

/// The requests a worker can send; each costs one unit of the campaign's rate budget.
enum WorkerAction: Sendable {
    case retry(String)
    /// A single read of one message (what its lifecycle needs to see).
    case read(String)
    /// A page of the campaign's list, for every message whose lifecycle wants a look.
    case listPage(after: String?)
    /// A page of one batch's list: every member, for the whole-batch decision.
    case batchPage(batch: String, after: String?)
    /// One whole-batch retry for these members (all with a durable intent).
    case retryBatch(batch: String, members: [String])
}

/// Works one campaign: scheduling and I/O only. The life of each message (what Postman's answers
/// mean, CONTRACT.md section 4) is its `MessageLifecycle`; the worker feeds it what Postman and the
/// journal said, sends what it asks for through one pacer (so the campaign never sees more than its
/// limit in any second, whatever the mix of retries and reads), and makes its outputs durable.
///
/// Reads are chosen by cost: list pages (1,000 messages a call) when enough messages want a look,
/// else single reads. Before any retry every selected message is looked at, so what Postman already
/// shows final, exhausted, unknown or blocked costs no retry call, and each intent carries Postman's
/// own attempt count.
actor CampaignWorker {
    let campaign: String
    let apiKey: String
    let context: RunContext
    private var pacer: SlidingWindowPacer
    private let clock = ContinuousClock()
    private let origin: ContinuousClock.Instant
    private let maxInFlight: Int
    private var rng = SystemRandomNumberGenerator()

    /// Every message of the campaign in this run, by id; `order` is the journal's (oldest first).
    private var machines: [String: MessageLifecycle] = [:]
    private var batchOf: [String: String] = [:]
    private var openMessages = 0
    /// Indexes over the machines' needs, kept by `place` (entries are checked again when taken).
    private var wantsView: Set<String> = []
    private var intentQueue: [String] = []
    private var intentQueueHead = 0
    private var callQueue: [String] = []
    private var inFlight = 0
    private var busy: Set<String> = []

    private var settled: [Settlement] = []
    private var accepted: [(id: String, at: Date, deadline: Date)] = []
    private var calls = APICallCounts()
    /// Requests per whole second for the report's rate chart; rides along with `calls` at each flush.
    private var timeline: RequestTimeline
    private var lastFlush: Double = 0
    private var flushing = false
    private var refilling = false
    private var lastTick: Double = 0
    /// When the next wanted look falls due (from the latest scan).
    private var nextViewDue = 0.0

    private var backoffUntil: Double = 0
    private var consecutiveFailures = 0
    private var lastAnswer: Double = 0
    private let backoff = Backoff()

    /// List sweeps: one page at a time; `startCursor` skips the campaign's older history once a sweep
    /// found where this run's messages begin (the list's order is not documented, so a message not
    /// seen from there is read singly, never assumed absent).
    private var sweepCursor: String?
    private var sweepActive = false
    private var sweepPageInFlight = false
    private var sweepWanted: Set<String> = []
    private var sweepPages = 0
    private var sweepHit = false
    private var sweepSkipCursor: String?
    private var startCursor: String?
    /// The cursor the current sweep started from (nil: the list's beginning).
    private var sweepStartedAt: String?
    /// Pages of the current sweep before the first one holding any of the run's messages.
    private var sweepSkippedPages = 0
    private var lastSweepEnd: Double = -1_000_000
    private var pagesEstimate: Int

    private(set) var stats = WorkerStats()
    private var requestsSent = 0

    /// Quiet hours began during this run: no more retries; what was not sent is left for the next run.
    private var quietHoursBegan = false
    private var quietHoursChecked = false
    private var deferred: [String] = []
    private var unsent: [String] = []
    private var released = false

    /// A snapshot for the progress display.
    func progress() -> CampaignProgress {
        var awaiting = 0
        for id in wantsView { if case .awaiting = machines[id]?.phase { awaiting += 1 } }
        return CampaignProgress(
            campaign: campaign, retried: stats.accepted, settled: stats.settled.values.reduce(0, +),
            awaitingOutcome: awaiting, toSend: max(0, openMessages - awaiting), requestsSent: requestsSent,
            allowedRate: pacer.currentLimit)
    }

    /// No request before this instant (the run's `notBefore`, or one second after a worker took the
    /// campaign's lease, so the previous holder's requests have left every 1-second window).
    private let notBefore: ContinuousClock.Instant
    /// `run --worker`: false once this worker's lease on the campaign may have expired; nothing is sent then.
    private let leaseValid: @Sendable () -> Bool

    /// The journal; fenced by the campaign's lease in `run --worker`.
    private let store: RunStore
    /// A plain run's workers share one journal write per flush (nil with a lease fence: each campaign's
    /// writes are checked against its own lease).
    private let batcher: JournalBatcher?

    init(
        campaign: String, apiKey: String, context: RunContext, items: [JournalItem], messagesInTable: Int,
        notBefore: ContinuousClock.Instant? = nil, leaseValid: @escaping @Sendable () -> Bool = { true },
        fence: LeaseFence? = nil
    ) {
        var store = context.store
        store.fence = fence
        self.store = store
        batcher = fence == nil ? JournalBatcher.shared(for: context) : nil
        self.notBefore = notBefore ?? context.notBefore
        self.leaseValid = leaseValid
        self.campaign = campaign
        self.apiKey = apiKey
        self.context = context
        let limit = context.settings.rateLimit(for: campaign)
        // An unanswered request cannot arrive after the client gave up on it (the request timeout).
        pacer = SlidingWindowPacer(limit: limit, inFlightCap: context.settings.requestTimeout.seconds + 1)
        timeline = RequestTimeline(campaign: campaign, rateLimit: limit)
        maxInFlight = max(2, limit)
        origin = ContinuousClock.now
        pagesEstimate = max(1, (messagesInTable + 999) / 1000)
        let settings = context.settings
        let policy = MessageLifecycle.Policy(
            pollTimeout: settings.pollTimeout.seconds, firstPollDelay: settings.firstPollDelay.seconds,
            maxPollInterval: settings.maxPollInterval.seconds, callTimeout: settings.requestTimeout.seconds)
        let wall = Date().timeIntervalSince1970
        for item in items {
            let row = MessageLifecycle.Row(
                retryCount: item.snapRetryCount, baseRetryCount: item.baseRetryCount, batchId: item.batchId,
                recipient: item.recipientMasked)
            let durable: MessageLifecycle.Durable
            switch item.state {
            case "selected": durable = .selected
            case "intent": durable = .intent(witness: item.attemptsBefore, intentAt: item.intentAt?.timeIntervalSince1970)
            case "accepted":
                durable = .accepted(
                    acceptedAt: (item.acceptedAt ?? Date()).timeIntervalSince1970,
                    deadline: (item.pollDeadline ?? Date()).timeIntervalSince1970, lastStatus: item.lastStatus,
                    witness: item.attemptsBefore)
            default: continue
            }
            machines[item.messageId] = MessageLifecycle(restoring: durable, row: row, policy: policy, at: wall)
            if let batch = item.batchId { batchOf[item.messageId] = batch }
            openMessages += 1
            initialOrder.append(item.messageId)
        }
    }

    /// The journal's order (oldest first), in which the lifecycles are first filed.
    private var initialOrder: [String] = []

    private var now: Double { (clock.now - origin).seconds }
    private var wallNow: Double { Date().timeIntervalSince1970 }
    private var stopping: Bool { context.stopReason != nil }
    private var logger: Logger {
        var logger = context.logger
        logger[metadataKey: "campaign"] = "\(campaign)"
        return logger
    }

    // MARK: - Feeding the lifecycles

    /// One event for one message; its outputs become journal writes, stops and batch news.
    private func apply(_ id: String, _ event: MessageLifecycle.Event) {
        guard var machine = machines[id] else { return }
        let wasOver = machine.isOver
        let outputs = machine.handle(event)
        machines[id] = machine
        if !wasOver && machine.isOver { openMessages -= 1 }
        var blocked: [String] = []
        for output in outputs {
            switch output {
            case .accepted(let at, let deadline):
                accepted.append((id, Date(timeIntervalSince1970: at), Date(timeIntervalSince1970: deadline)))
                stats.accepted += 1
            case .resolved(let resolution):
                record(id, resolution)
            case .revertIntent:
                unsent.append(id)
            case .stopRun(let why):
                context.stop(.refused(why))
            case .batchBlocked(let batch):
                blocked.append(batch)
            case .unknownStatus(let status):
                logger.warning("unknown Postman status; treated as in flight", metadata: ["message": "\(id)", "status": "\(status)"])
                stats.unknownStatuses[id] = status
            }
        }
        // After a stop or once quiet hours began, whatever comes back to "nothing sent" (a 429, a lost
        // answer that did not land, a look that found it retryable) is left for a later run at once.
        if (released || quietHoursBegan) && machine.hasSentNothing {
            apply(id, .release)
            if quietHoursBegan { deferred.append(id) }
            return
        }
        place(id)
        for batch in blocked { blockBatch(batch) }
        // The last member of a batch to be looked at lets the batch's whole-batch check start.
        if let batch = batchOf[id], case .waiting = batchChecks[batch, default: .waiting], held[batch] != nil {
            startBatchCheckIfDue(batch)
        }
    }

    /// Batches known not to be retryable: no call for any of their members that has not been sent.
    private var blockedBatches: Set<String> = []

    private func blockBatch(_ batch: String) {
        guard blockedBatches.insert(batch).inserted else { return }
        for (id, member) in batchOf where member == batch && machines[id]?.hasSentNothing == true {
            apply(id, .batchBlocked)
        }
    }

    /// Files a message under what it needs next.
    private func place(_ id: String) {
        guard let machine = machines[id] else { return }
        if machine.hasSentNothing, let batch = batchOf[id], blockedBatches.contains(batch) {
            apply(id, .batchBlocked)
            return
        }
        switch machine.need {
        case .view:
            wantsView.insert(id)
            viewsChanged = true
        case .intent:
            wantsView.remove(id)
            if holdForBatch(id) { return }
            intentQueue.append(id)
        case .retryCall:
            wantsView.remove(id)
            if let batch = batchOf[id], case .calling = batchChecks[batch] {
                // A member of a whole-batch call (again after a 429): the batch goes, not the member.
                if queuedBatchCalls.insert(batch).inserted { batchCallQueue.append(batch) }
                return
            }
            callQueue.append(id)
        case .nothing:
            wantsView.remove(id)
        }
    }

    // MARK: - Whole-batch retries

    /// Where a batch stands in the whole-batch decision (only batches with enough members in the run).
    enum BatchCheck {
        /// Members are being looked at; their batch is read once none is still unread.
        case waiting
        case reading(after: String?, members: [WholeBatch.Member])
        case committing
        /// Intents committed with the batch call's row: one call goes for all.
        case calling
        /// Singles from here on (decided so, or the batch call was made).
        case singles
    }
    private var batchChecks: [String: BatchCheck] = [:]
    /// Members that are ready, held back until their batch is decided.
    private var held: [String: Set<String>] = [:]
    private var batchReadQueue: [String] = []
    private var batchReadInFlight: Set<String> = []
    private var batchCallQueue: [String] = []
    private var queuedBatchCalls: Set<String> = []
    /// Batches called whole in any run (never again), read at the start.
    private var calledBatches: Set<String> = []
    private var committingBatch = false

    /// Run members per batch, for batches that could go whole.
    private lazy var batchRunMembers: [String: [String]] = {
        var members: [String: [String]] = [:]
        for (id, batch) in batchOf { members[batch, default: []].append(id) }
        return members.filter { $0.value.count >= WholeBatch.minimumMembers }
    }()

    /// A ready member of a batch that may go whole waits for the decision.
    private func holdForBatch(_ id: String) -> Bool {
        guard context.settings.wholeBatchRetries, let batch = batchOf[id], batchRunMembers[batch] != nil else { return false }
        switch batchChecks[batch, default: .waiting] {
        case .singles: return false
        case .calling, .committing: return false  // a member back to ready after the call: singles
        case .waiting, .reading:
            held[batch, default: []].insert(id)
            startBatchCheckIfDue(batch)
            return true
        }
    }

    /// The batch's pages are read once every run member of it has been looked at.
    private func startBatchCheckIfDue(_ batch: String) {
        guard case .waiting = batchChecks[batch, default: .waiting], let members = batchRunMembers[batch] else { return }
        let looking = members.contains { id in
            switch machines[id]?.phase {
            case .unread?, .confirming?: return true
            default: return false
            }
        }
        guard !looking else { return }
        if calledBatches.contains(batch) || (held[batch]?.count ?? 0) < WholeBatch.minimumMembers {
            decideSingles(batch, why: calledBatches.contains(batch) ? "called whole before" : "too few members to retry")
            return
        }
        batchChecks[batch] = .reading(after: nil, members: [])
        batchReadQueue.append(batch)
    }

    private func decideSingles(_ batch: String, why: String) {
        batchChecks[batch] = .singles
        logger.debug("batch members go by single retries", metadata: ["batch": "\(batch)", "why": "\(why)"])
        let members = held.removeValue(forKey: batch) ?? []
        for id in members { place(id) }
    }

    private func onBatchPage(_ batch: String, _ page: PostmanPage) {
        batchReadInFlight.remove(batch)
        guard case .reading(_, var members) = batchChecks[batch] else { return }
        for message in page.messages { members.append(WholeBatch.Member(id: message.id, view: view(of: message, id: message.id))) }
        if page.skippedItems > 0 {
            decideSingles(batch, why: "the batch's list had unreadable items")
            return
        }
        if page.hasNextPage, let cursor = page.endCursor {
            batchChecks[batch] = .reading(after: cursor, members: members)
            batchReadQueue.append(batch)
            return
        }
        // Dedupe by id: the list's order is not documented, and a member may show twice.
        var seen: Set<String> = []
        members = members.filter { seen.insert($0.id).inserted }
        let ready = (held[batch] ?? []).filter { if case .intent = machines[$0]?.need { true } else { false } }
        switch WholeBatch.decide(members: members, ready: ready, everCalled: calledBatches.contains(batch)) {
        case .singles(let why): decideSingles(batch, why: why)
        case .whole:
            batchChecks[batch] = .committing
            pendingBatchCommits.append(batch)
        }
    }

    private var pendingBatchCommits: [String] = []

    /// One transaction: every member's intent with its witness, and the batch call's row.
    private func commitBatch(_ batch: String) async {
        defer {
            committingBatch = false
            ring()
        }
        let members = Array(held.removeValue(forKey: batch) ?? [])
        var ids: [String] = []
        var witnesses: [Int] = []
        for id in members {
            guard case .intent(let witness)? = machines[id]?.need else { continue }
            ids.append(id)
            witnesses.append(witness)
        }
        guard !stopping, !quietHoursBegan, !ids.isEmpty else {
            batchChecks[batch] = .singles
            for id in members { place(id) }
            return
        }
        do {
            let result = try await store.commitBatchIntent(
                run: context.run.id, campaign: campaign, batch: batch, messageIds: ids, witnesses: witnesses)
            context.crashPoints.reach("after-batch-intent")
            batchChecks[batch] = result.whole ? .calling : .singles
            if result.whole { calledBatches.insert(batch) }
            for id in ids {
                if result.intents.contains(id) {
                    apply(id, .intentCommitted)
                } else if result.conflicts.contains(id) {
                    apply(id, .intentConflict)
                } else {
                    apply(id, .release)
                }
            }
            for id in members where !ids.contains(id) { place(id) }
        } catch {
            batchChecks[batch] = .singles
            fail(error)
        }
    }

    /// The next whole-batch call, when every member's intent is durable.
    private func nextBatchCall() -> WorkerAction? {
        while !batchCallQueue.isEmpty {
            let batch = batchCallQueue.removeFirst()
            queuedBatchCalls.remove(batch)
            guard case .calling = batchChecks[batch], let members = batchRunMembers[batch] else { continue }
            let calling = members.filter { machines[$0]?.need == .retryCall && !busy.contains($0) }
            guard !calling.isEmpty else { continue }
            for id in calling { busy.insert(id) }
            context.crashPoints.reach("before-batch-call")
            return .retryBatch(batch: batch, members: calling)
        }
        return nil
    }

    /// A whole-batch call's answer, for each member. No member is taken as retried on the call's word:
    /// a 201 says only that Postman attempted the batch, so every member is settled by reading it (its
    /// attempt count against its witness), as a retry whose answer was lost; a 400 saying that no
    /// member was retried is settled the same way, and what is still right then goes by single retries.
    private func batchAnswer(_ result: Result<Void, PostmanAPIError>) -> MessageLifecycle.RetryAnswer {
        switch result {
        case .success:
            answered()
            return .attemptedAsBatch
        case .failure(let error):
            switch error.kind {
            case .http(let status) where status < 500 && status != 429:
                answered()
                if let status = error.httpStatus, MessageLifecycle.credentialRefusal(status: status, code: error.code) != nil {
                    return .refused(status: status, code: error.code, message: error.message)
                }
                return .attemptedAsBatch
            default:
                return retryAnswer(error)
            }
        }
    }

    private func record(_ id: String, _ resolution: MessageLifecycle.Resolution) {
        // A conflict is recorded by the intent transaction that found it.
        if resolution.outcome == .conflict {
            stats.conflicts += 1
            return
        }
        settled.append(
            Settlement(
                messageId: id, outcome: resolution.outcome.rawValue, result: resolution.result?.rawValue,
                update: resolution.update, lastStatus: resolution.lastStatus, postmanRetries: resolution.postmanRetries,
                newestError: resolution.newestError, httpStatus: resolution.httpStatus, postmanCode: resolution.postmanCode,
                postmanMessage: resolution.postmanMessage, unknownStatus: stats.unknownStatuses[id],
                acceptedAt: resolution.acceptedAt.map { Date(timeIntervalSince1970: $0) }))
        let key = resolution.outcome.rawValue + (resolution.result.map { "/" + $0.rawValue } ?? "")
        stats.settled[key, default: 0] += 1
    }

    // MARK: - Main loop

    func run() async {
        if context.settings.wholeBatchRetries, !batchRunMembers.isEmpty {
            do { calledBatches = try await store.calledBatches(campaign: campaign) } catch { fail(error) }
        }
        for id in initialOrder { place(id) }
        initialOrder = []
        let notBefore = (self.notBefore - origin).seconds
        lastAnswer = now
        // Reads that settle lost answers may start this long after a signal: with the request timeout (5 s)
        // and the final flush, the process still exits before the signal backstop (8 s) and the contract's 10 s.
        let stopGrace = 2.0
        var stopSeenAt: Double?
        await withDiscardingTaskGroup { group in
            while true {
                let t = now
                if t - lastTick >= 0.25 { tick() }
                // Journal writes and the next wave's intents go to the database from child tasks: a slot
                // of the budget not used when it opens is lost for good, so the sending loop never waits
                // on PostgreSQL. One flush and one refill at a time keep the journal's order.
                if !flushing, t - lastFlush >= 0.5 || settled.count >= 200 {
                    flushing = true
                    group.addTask { await self.flush() }
                }
                if !refilling, !stopping, !quietHoursBegan, callQueue.count < max(1, waveSize / 2),
                    intentQueueHead < intentQueue.count
                {
                    refilling = true
                    group.addTask { await self.refillWave() }
                }
                if !committingBatch, !pendingBatchCommits.isEmpty {
                    committingBatch = true
                    let batch = pendingBatchCommits.removeFirst()
                    group.addTask { await self.commitBatch(batch) }
                }
                if stopping {
                    if !released { releaseUnsent() }
                    stopSeenAt = stopSeenAt ?? t
                    // Settle unknown retries for a while after a signal; then leave them to the next run.
                    let giveUp = t - stopSeenAt! > stopGrace || context.stopReason != .signal
                    if inFlight == 0 && !refilling && (giveUp || !hasUnsettled) { break }
                    if giveUp {
                        try? await Task.sleep(for: .milliseconds(20))
                        continue
                    }
                } else if isFinished {
                    break
                }
                if inFlight >= maxInFlight {
                    // An answer rings the loop awake.
                    await nap(until: t + Self.longestNap)
                    continue
                }
                if !leaseValid() {
                    // The heartbeat is late: wait for it rather than risk sending next to a new holder.
                    try? await Task.sleep(for: .milliseconds(20))
                    continue
                }
                let slot = max(pacer.earliestSend(now: t), backoffUntil, notBefore)
                if slot > t {
                    // Until the slot opens (an answer may open it sooner: it rings).
                    await nap(until: min(slot, t + Self.longestNap))
                    continue
                }
                guard let action = nextAction(at: t) else {
                    // Nothing to send. An answer, a committed wave or a batch intent rings the loop awake;
                    // else it sleeps until the next look falls due, or the next tick or flush.
                    let due = min(
                        t + max(0.002, nextViewDue - wallNow), lastTick + 0.25, lastFlush + 0.5, t + Self.longestNap)
                    await nap(until: max(t + 0.002, due))
                    continue
                }
                let ticket = pacer.recordSend(at: now)
                requestsSent += 1
                inFlight += 1
                switch action {
                case .retry: calls.retry += 1
                case .retryBatch: calls.batchRetry += 1
                case .read, .listPage, .batchPage: calls.poll += 1
                }
                timeline.request()
                group.addTask {
                    let timing = ResponseTiming()
                    await ResponseTiming.$current.withValue(timing) { await self.perform(action) }
                    await self.answered(ticket: ticket, headArrivedAt: timing.headArrivedAt)
                }
            }
        }
        await finish()
    }

    // MARK: - Sleeping without polling

    /// The longest the loop sleeps without being rung: how soon it sees a stop or a lease that lapsed
    /// (nothing is sent then anyway: every send checks both first).
    static let longestNap = 0.25
    /// The loop's sleep, ended early by `ring()`. One timer at a time is armed (a later nap reuses one
    /// that fires no later than it wants): a hundred workers that each polled every few milliseconds
    /// spent most of the job's CPU on libdispatch's timers (docs/benchmarks.md, issue 17).
    private var waiting: CheckedContinuation<Void, Never>?
    /// When the armed timer fires (nil: none armed).
    private var armedAt: Double?

    private func nap(until deadline: Double) async {
        let start = now
        guard deadline > start else { return }
        if armedAt.map({ $0 > deadline || $0 <= start }) ?? true {
            armedAt = deadline
            let delay = deadline - start
            Task { [weak self] in
                try? await Task.sleep(for: .seconds(delay))
                await self?.timerFired(deadline)
            }
        }
        await withCheckedContinuation { continuation in waiting = continuation }
    }

    private func timerFired(_ deadline: Double) {
        if armedAt == deadline { armedAt = nil }
        ring()
    }

    /// Something the loop waits for happened: it looks again now.
    private func ring() {
        guard let continuation = waiting else { return }
        waiting = nil
        continuation.resume()
    }

    private var isFinished: Bool { inFlight == 0 && !refilling && !committingBatch && openMessages == 0 }

    /// A retry whose answer is unknown, or refused and not yet read back, is still open (only reads may
    /// settle it after a stop).
    private var hasUnsettled: Bool { wantsView.contains { Self.settlesACall(machines[$0]?.phase) } }

    private static func settlesACall(_ phase: MessageLifecycle.Phase?) -> Bool {
        switch phase {
        case .unsettled?, .reconciling?: return true
        default: return false
        }
    }

    /// Stop or quiet hours: every message that has sent nothing is left for a later run (one with a read
    /// in flight too: what the read says is then ignored).
    private func releaseUnsent() {
        released = true
        for id in Array(machines.keys) where machines[id]?.hasSentNothing == true {
            apply(id, .release)
        }
    }

    private func tick() {
        lastTick = now
        let wall = wallNow
        for id in Array(wantsView) where !busy.contains(id) {
            if case .awaiting = machines[id]?.phase { apply(id, .tick(at: wall)) }
        }
    }

    /// What to send next: reads first (a lost answer is settled before anything else is sent for it,
    /// and no message is retried before Postman's state is known), then the next retry of the wave.
    private func nextAction(at t: Double) -> WorkerAction? {
        // Checked at the start (nothing is read for messages that will not be sent anyway) and before
        // each retry, not only when a wave is committed: a wave ready when quiet hours begin is not sent.
        if !quietHoursChecked {
            quietHoursChecked = true
            if !stopping, context.settings.inQuietHours { beginQuietHours() }
        }
        if !stopping, let batch = batchReadQueue.first, !batchReadInFlight.contains(batch),
            case .reading(let after, _) = batchChecks[batch]
        {
            batchReadQueue.removeFirst()
            batchReadInFlight.insert(batch)
            return .batchPage(batch: batch, after: after)
        }
        if let read = nextRead() { return read }
        if stopping || quietHoursBegan { return nil }
        if let call = nextBatchCall() { return call }
        if !callQueue.isEmpty, context.settings.inQuietHours {
            beginQuietHours()
            return nil
        }
        while !callQueue.isEmpty {
            let id = callQueue.removeFirst()
            guard machines[id]?.need == .retryCall, !busy.contains(id) else { continue }
            busy.insert(id)
            context.crashPoints.reach("before-retry-call")
            return .retry(id)
        }
        return nil
    }

    /// A look was wanted, or a read ended, since the last scan: the next scan may find something new.
    private var viewsChanged = true

    /// Chooses between a list sweep and single reads, by which needs fewer calls for the looks due.
    private func nextRead() -> WorkerAction? {
        if sweepActive, !stopping {
            guard !sweepPageInFlight else { return nil }
            sweepPageInFlight = true
            return .listPage(after: sweepCursor)
        }
        let wall = wallNow
        // Nothing changed and nothing falls due yet: no scan of every message (most of the job's CPU).
        if !viewsChanged, !stopping, wall < nextViewDue { return nil }
        viewsChanged = false
        var singles: [(id: String, due: Double)] = []
        var pageable: [String] = []
        /// Awaited outcomes not due yet: a sweep that goes anyway shows them too, at no extra cost.
        var early: [String] = []
        var soonest = Double.infinity
        for id in wantsView where !busy.contains(id) && !sweepWanted.contains(id) {
            guard let machine = machines[id], case .view(let after, let singleOnly) = machine.need else { continue }
            // After a stop only the reads that settle a call are sent.
            if stopping && !Self.settlesACall(machine.phase) { continue }
            if after > wall {
                soonest = min(soonest, after)
                if !singleOnly, case .awaiting = machine.phase { early.append(id) }
                continue
            }
            if singleOnly || stopping || nearDeadline(machine.phase, wall: wall) {
                singles.append((id, after))
            } else {
                pageable.append(id)
            }
        }
        nextViewDue = soonest
        // A sweep when its pages cost less than one read for each message it would show; then the
        // messages it will cover wait for it rather than trickle out as single reads.
        let coverable = pageable.count + early.count
        if !pageable.isEmpty && coverable >= pagesEstimate && coverable > 1 {
            guard now - lastSweepEnd >= sweepInterval else {
                // A sweep is due soon and will cover these; single reads now would cost more. Look again
                // when it may start (at most a quarter second on: the interval shrinks when retries end).
                nextViewDue = min(nextViewDue, wall + min(0.25, lastSweepEnd + sweepInterval - now))
                guard let id = singles.min(by: { $0.due < $1.due })?.id else { return nil }
                if singles.count > 1 { viewsChanged = true }
                busy.insert(id)
                return .read(id)
            }
            sweepActive = true
            sweepPageInFlight = true
            sweepStartedAt = startCursor
            sweepCursor = startCursor
            sweepPages = 0
            sweepHit = false
            sweepSkippedPages = 0
            sweepSkipCursor = startCursor
            sweepWanted = Set(pageable).union(early)
            return .listPage(after: startCursor)
        }
        let next = singles.min { $0.due < $1.due }?.id ?? pageable.first
        guard let id = next else { return nil }
        // More were due than this one read: the next slot scans again.
        if singles.count + pageable.count > 1 { viewsChanged = true }
        busy.insert(id)
        return .read(id)
    }

    /// An awaited outcome whose poll deadline comes before the next sweep could start: read it singly.
    private func nearDeadline(_ phase: MessageLifecycle.Phase, wall: Double) -> Bool {
        guard case .awaiting(let a) = phase else { return false }
        return a.deadline - wall < max(1, lastSweepEnd + sweepInterval - now)
    }

    /// Time between list sweeps. While retries remain, sweeps take at most about 2.5% of the campaign's
    /// budget (a slow campaign's slots are its retries' floor); once only outcomes are awaited, they come
    /// as soon as the first outcomes can be in.
    private var sweepInterval: Double {
        let firstPoll = context.settings.firstPollDelay.seconds
        let retriesLeft = intentQueueHead < intentQueue.count || !callQueue.isEmpty || !batchCallQueue.isEmpty
        guard retriesLeft else { return firstPoll }
        return max(firstPoll, Double(pagesEstimate) / (0.025 * pacer.currentLimit))
    }

    /// About one second of the campaign's budget.
    private var waveSize: Int { max(1, Int(pacer.currentLimit * context.settings.waveSeconds)) }

    /// Commits the intents of the next wave (about one second of the campaign's budget) in one
    /// transaction, each with Postman's attempt count, after checking each row is still as it was read.
    private func refillWave() async {
        defer {
            refilling = false
            ring()
        }
        guard !stopping, !quietHoursBegan else { return }
        if context.settings.inQuietHours {
            beginQuietHours()
            return
        }
        var wave: [(id: String, witness: Int)] = []
        var seen: Set<String> = []
        while wave.count < waveSize, intentQueueHead < intentQueue.count {
            let id = intentQueue[intentQueueHead]
            intentQueueHead += 1
            guard case .intent(let witness)? = machines[id]?.need, seen.insert(id).inserted else { continue }
            wave.append((id, witness))
        }
        if intentQueueHead > 4096 {
            intentQueue.removeFirst(intentQueueHead)
            intentQueueHead = 0
        }
        guard !wave.isEmpty else { return }
        do {
            let result: (intents: Set<String>, conflicts: Set<String>)
            if let batcher {
                result = try await batcher.commitIntents(wave.map(\.id), witnesses: wave.map(\.witness))
            } else {
                result = try await store.commitIntents(
                    run: context.run.id, messageIds: wave.map(\.id), witnesses: wave.map(\.witness))
                context.crashPoints.reach("after-intent")
            }
            for (id, _) in wave {
                if result.intents.contains(id) {
                    apply(id, .intentCommitted)
                } else if result.conflicts.contains(id) {
                    logger.info("row changed since it was read; not retried", metadata: ["message": "\(id)"])
                    apply(id, .intentConflict)
                } else {
                    // Its journal entry moved on without this worker (writes are fenced, so it should not
                    // happen): left open for a later pass, never sent.
                    logger.warning("journal entry no longer selected; left for a later pass", metadata: ["message": "\(id)"])
                    apply(id, .release)
                }
            }
        } catch {
            fail(error)
        }
    }

    /// Quiet hours: the messages not yet retried wait for the next run; reads go on.
    private func beginQuietHours() {
        let before = unsent.count
        var left: [String] = []
        for id in Array(machines.keys) where machines[id]?.hasSentNothing == true {
            apply(id, .release)
            left.append(id)
        }
        quietHoursBegan = true
        deferred.append(contentsOf: left)
        if let quiet = context.settings.quietHours {
            logger.notice(
                "quiet hours: no more retries in this run; the rest is left for the next run",
                metadata: ["quiet_hours": "\(quiet)", "left": "\(left.count)", "intents_reverted": "\(unsent.count - before)"])
        }
    }

    // MARK: - Requests

    /// Whether a retry call chosen for `ids` may still go out now that its task runs.
    private func mayStillCall(_ ids: [String]) -> Bool {
        !stopping && !quietHoursBegan && leaseValid() && ids.allSatisfy { machines[$0]?.need == .retryCall }
    }

    /// A retry call chosen but not sent after all: neither a call nor a request of the campaign's, and its
    /// messages (unless something released them already) go back, or wait for the next run after quiet
    /// hours began.
    private func notSentAfterAll(_ ids: [String]) {
        timeline.cancelRequest()
        requestsSent -= 1
        for id in ids where machines[id]?.hasSentNothing == true {
            apply(id, .release)
            if quietHoursBegan { deferred.append(id) }
        }
    }

    private func perform(_ action: WorkerAction) async {
        let client = context.client
        switch action {
        case .retry(let id):
            // The last look before the call: nothing new goes out after a stop, a lost lease, or once
            // quiet hours began, nor for a message released while this call waited to start (its intent
            // may already be reverted: a call then would be a retry the journal does not know).
            guard mayStillCall([id]) else {
                calls.retry -= 1
                if !stopping, !quietHoursBegan, machines[id]?.need == .retryCall {
                    // Only the hold's or the lease's guard is late (a slow heartbeat): the intent stands and
                    // the call waits for the guard at the front of the queue. Released, the message would
                    // stay open to the end of the run ("messages still open", exit 75).
                    timeline.cancelRequest()
                    requestsSent -= 1
                    callQueue.insert(id, at: 0)
                    break
                }
                notSentAfterAll([id])
                break
            }
            apply(id, .callSent)
            let answer: MessageLifecycle.RetryAnswer
            do {
                let result = try await client.retryMessage(campaignId: campaign, messageId: id, apiKey: apiKey)
                context.crashPoints.reach("after-retry-call")
                answered()
                switch result {
                case .accepted(let message): answer = .accepted(latestStatus: message?.latestStatus)
                }
            } catch {
                answer = retryAnswer(Self.apiError(error))
            }
            apply(id, .callAnswered(answer, at: wallNow))
        case .read(let id):
            do {
                let message = try await client.getMessage(campaignId: campaign, messageId: id, apiKey: apiKey)
                answered()
                apply(id, .viewed(view(of: message, id: id), fromPage: false, at: wallNow))
            } catch {
                let failure = Self.apiError(error)
                if case .http(404) = failure.kind {
                    answered()
                    apply(id, .readNotFound(code: failure.code, at: wallNow))
                } else if case .badResponse(let status) = failure.kind, noteBadBody(id) {
                    // The same message object unreadable again and again: named, and ended by its lifecycle
                    // (never retried blind), not read forever.
                    logger.warning("Postman's message object cannot be read", metadata: ["message": "\(id)", "error": "\(failure)"])
                    apply(id, .readRefused(status: status, code: "unreadable_message_object", at: wallNow))
                } else if !handleTransient(failure), let status = failure.httpStatus {
                    answered()
                    logger.warning("unexpected answer to a read", metadata: ["message": "\(id)", "error": "\(failure)"])
                    apply(id, .readRefused(status: status, code: failure.code, at: wallNow))
                }
            }
        case .batchPage(let batch, let cursor):
            do {
                let page = try await client.listBatchMessages(
                    campaignId: campaign, batchId: batch, limit: 1000, after: cursor, apiKey: apiKey)
                answered()
                onBatchPage(batch, page)
            } catch {
                let failure = Self.apiError(error)
                batchReadInFlight.remove(batch)
                if handleTransient(failure) {
                    batchReadQueue.append(batch)
                } else {
                    if let status = failure.httpStatus, let stop = MessageLifecycle.credentialRefusal(status: status, code: failure.code) {
                        context.stop(.refused(stop))
                    }
                    decideSingles(batch, why: "the batch's list answered \(failure)")
                }
            }
        case .retryBatch(let batch, let members):
            guard mayStillCall(members) else {
                calls.batchRetry -= 1
                notSentAfterAll(members)
                break
            }
            for id in members { apply(id, .callSent) }
            let result: Result<Void, PostmanAPIError>
            do {
                try await client.retryBatch(campaignId: campaign, batchId: batch, apiKey: apiKey)
                context.crashPoints.reach("after-batch-call")
                result = .success(())
            } catch {
                result = .failure(Self.apiError(error))
            }
            let answer = batchAnswer(result)
            if case .rateLimited = answer {} else if case .notSent = answer {} else {
                batchChecks[batch] = .singles  // whatever its members need now goes by single retries
                let failure = if case .failure(let error) = result { error } else { nil as PostmanAPIError? }
                logger.info(
                    "whole-batch retry", metadata: ["batch": "\(batch)", "members": "\(members.count)",
                                                   "answer": "\(failure.map { "\($0)" } ?? "201")"])
                let status = failure?.httpStatus ?? 201
                let code = failure?.code
                do { try await store.recordBatchAnswer(campaign: campaign, batch: batch, httpStatus: status, code: code) } catch {
                    fail(error)
                }
            }
            let at = wallNow
            for id in members { apply(id, .callAnswered(answer, at: at)) }
        case .listPage(let cursor):
            do {
                let page = try await client.listCampaignMessages(
                    campaignId: campaign, limit: 1000, after: cursor, apiKey: apiKey)
                answered()
                onPage(page)
            } catch {
                let failure = Self.apiError(error)
                sweepPageInFlight = false
                if !handleTransient(failure) {
                    if let status = failure.httpStatus, let stop = MessageLifecycle.credentialRefusal(status: status, code: failure.code) {
                        context.stop(.refused(stop))
                    }
                    // The list endpoint refused (4xx): those who wanted a look are read singly.
                    endSweep()
                }
            }
        }
        inFlight -= 1
        viewsChanged = true
        ring()
        switch action {
        case .retry(let id), .read(let id): busy.remove(id)
        case .retryBatch(_, let members): for id in members { busy.remove(id) }
        case .listPage, .batchPage: break
        }
    }

    /// Bad bodies per message: one may be a cut connection; from the second on it is the message itself.
    private var badBodies: [String: Int] = [:]

    private func noteBadBody(_ id: String) -> Bool {
        badBodies[id, default: 0] += 1
        if badBodies[id]! < 2 {
            noteFailure(PostmanAPIError(kind: .badResponse(status: 200), message: "unreadable message object"))
            return false
        }
        answered()
        return true
    }

    /// A failed retry call, as the lifecycle understands it.
    private func retryAnswer(_ error: PostmanAPIError) -> MessageLifecycle.RetryAnswer {
        switch error.kind {
        case .http(429):
            answered()
            calls.rateLimited += 1
            timeline.rateLimited()
            pacer.recordRateLimited(at: now)
            honourRetryAfter(error)
            return .rateLimited
        case .http(let status) where status < 500:
            answered()
            return .refused(status: status, code: error.code, message: error.message)
        default:
            noteFailure(error)
            return error.mayHaveReachedServer ? .lost : .notSent
        }
    }

    /// What a message object shows, for the lifecycle; the batch status is that of the row's batch.
    private func view(of message: PostmanMessage, id: String) -> PostmanView {
        let batch = batchOf[id]
        let ref = message.batches.first { $0.id == batch && $0.status != nil } ?? message.batches.first { $0.status != nil }
        return PostmanView(
            latestStatus: message.latestStatus, attempts: message.attemptCount, newestError: message.newestErrorCode,
            batchStatus: ref?.status)
    }

    private func onPage(_ page: PostmanPage) {
        sweepPageInFlight = false
        sweepPages += 1
        let wall = wallNow
        var ours = 0
        for message in page.messages {
            // Any message of this run (wanted by this sweep or not) marks where the run's messages begin.
            if machines[message.id] != nil { ours += 1 }
            guard sweepWanted.remove(message.id) != nil else { continue }
            apply(message.id, .viewed(view(of: message, id: message.id), fromPage: true, at: wall))
        }
        if ours == 0 && !sweepHit {
            // Older history before this run's messages: later sweeps can start after it.
            sweepSkipCursor = page.endCursor ?? sweepSkipCursor
            sweepSkippedPages += 1
        } else if ours > 0 {
            sweepHit = true
        }
        if page.skippedItems > 0 {
            logger.warning("list page items without id or latestStatus skipped", metadata: ["count": "\(page.skippedItems)"])
        }
        sweepCursor = page.endCursor
        if !page.hasNextPage || sweepWanted.isEmpty || page.endCursor == nil { endSweep() }
    }

    private func endSweep() {
        sweepActive = false
        sweepPageInFlight = false
        lastSweepEnd = now
        let startedAt = sweepStartedAt
        if sweepHit {
            startCursor = sweepSkipCursor
            // Later sweeps start after the skipped history: their cost is the pages from there on (the whole
            // walk's count made every poll a single read once a campaign had months of history).
            pagesEstimate = max(1, sweepPages - sweepSkippedPages)
        } else {
            pagesEstimate = max(1, sweepPages)
        }
        let missing = sweepWanted
        sweepWanted = []
        if startedAt != nil, missing.count > pagesEstimate {
            // The list's order is not documented: many messages not seen after the remembered cursor means it
            // does not mark where this run's messages begin. The next sweep starts from the beginning.
            startCursor = nil
            logger.debug("list sweep from a remembered cursor missed messages; next sweep from the start", metadata: ["missed": "\(missing.count)"])
            return
        }
        // Those the list did not show are read one by one.
        let wall = wallNow
        for id in missing { apply(id, .absentFromList(at: wall)) }
    }

    private static func apiError(_ error: any Error) -> PostmanAPIError {
        if let error = error as? PostmanAPIError { return error }
        return PostmanAPIError(kind: .connection, message: "\(type(of: error))")
    }

    /// The pacer anchors the request at its response head when there was one (Postman had it by then),
    /// else now (the failure was noticed now; the pacer caps it at send + 1 s anyway).
    private func answered(ticket: Int, headArrivedAt: ContinuousClock.Instant?) {
        pacer.recordAnswer(ticket: ticket, at: headArrivedAt.map { ($0 - origin).seconds } ?? now)
    }

    private func answered() {
        lastAnswer = now
        consecutiveFailures = 0
    }

    /// 429 / 5xx / timeout / dropped connection / bad body: back off; the look is simply taken again
    /// later. Returns false for a 4xx (the caller hands it to the lifecycle).
    private func handleTransient(_ error: PostmanAPIError) -> Bool {
        switch error.kind {
        case .http(429):
            answered()
            calls.rateLimited += 1
            timeline.rateLimited()
            pacer.recordRateLimited(at: now)
            honourRetryAfter(error)
            return true
        case .http(let status) where status < 500:
            return false
        default:
            noteFailure(error)
            return true
        }
    }

    private func honourRetryAfter(_ error: PostmanAPIError) {
        if let wait = error.retryAfter { backoffUntil = max(backoffUntil, now + wait.seconds) }
    }

    private func noteFailure(_ error: PostmanAPIError) {
        consecutiveFailures += 1
        stats.transientErrors += 1
        backoffUntil = max(backoffUntil, now + backoff.delay(attempt: consecutiveFailures, unit: Double.random(in: 0..<1, using: &rng)))
        logger.debug("transient Postman error; backing off", metadata: ["error": "\(error)"])
        if now - lastAnswer > context.settings.unreachableAfter.seconds {
            context.stop(.unreachable("no answer for \(Int(now - lastAnswer)) s; last error: \(error)"))
        }
    }

    // MARK: - Recording

    private func flush() async {
        defer { flushing = false }
        lastFlush = now
        let acceptedNow = accepted
        let settledNow = settled
        var callsNow = calls
        callsNow.timeline = timeline
        // Nothing to record: no transaction (three campaigns used to commit 6 empty ones a second).
        guard !acceptedNow.isEmpty || !settledNow.isEmpty || !callsNow.isEmpty else { return }
        accepted = []
        settled = []
        calls = APICallCounts()
        timeline = timeline.emptied
        if let batcher {
            do {
                stats.writeConflicts += try await batcher.write(
                    .init(accepted: acceptedNow, settled: settledNow, calls: callsNow))
            } catch {
                calls.add(callsNow)
                fail(error)
            }
            return
        }
        do {
            if !acceptedNow.isEmpty {
                try await store.recordAccepted(
                    run: context.run.id, messageIds: acceptedNow.map(\.id), acceptedAt: acceptedNow.map(\.at),
                    deadlines: acceptedNow.map(\.deadline))
                context.crashPoints.reach("after-record-accepted")
            }
            if !settledNow.isEmpty {
                context.crashPoints.reach("before-write-back")
                let result = try await store.settle(run: context.run.id, settledNow, apiCalls: callsNow)
                stats.writeConflicts += result.conflicts.count
                context.crashPoints.reach("after-write-back")
            } else {
                try await store.addCalls(run: context.run.id, callsNow)
            }
        } catch {
            // The counts were not recorded: keep them for the next flush (the run is stopping anyway).
            calls.add(callsNow)
            fail(error)
        }
    }

    private func fail(_ error: any Error) {
        if let lost = error as? LeaseLost {
            context.stop(.leaseLost(lost.description))
            logger.error("lease lost; stopping", metadata: ["error": "\(lost)"])
            return
        }
        if let lost = error as? HoldLost {
            context.stop(.holdLost(lost.description))
            logger.error("run hold lost; stopping", metadata: ["error": "\(lost)"])
            return
        }
        let failure = JobError.classify(error)
        context.stop(.database(failure.message, transient: failure.status == .temporary))
        logger.error("database failure; stopping", metadata: ["error": "\(failure.message)"])
    }

    /// After the loop: record what is known; unsent intents go back to `selected`.
    private func finish() async {
        // An intent committed while the loop was stopping was never sent: it goes back too.
        if stopping || quietHoursBegan { releaseUnsent() }
        await flush()
        if !calls.isEmpty { await flush() }
        if !unsent.isEmpty {
            do {
                try await store.revertIntents(run: context.run.id, messageIds: unsent)
            } catch {
                fail(error)
            }
        }
        if !deferred.isEmpty {
            do {
                try await store.deferToNextRun(run: context.run.id, messageIds: deferred)
                stats.deferred = deferred.count
            } catch {
                fail(error)
            }
        }
        var awaiting = 0
        for id in wantsView { if case .awaiting = machines[id]?.phase { awaiting += 1 } }
        stats.pendingAtStop = awaiting
    }
}

/// What a worker did, for progress lines and the run summary.
struct WorkerStats: Sendable {
    var accepted = 0
    var conflicts = 0
    var writeConflicts = 0
    var transientErrors = 0
    var pendingAtStop = 0
    var deferred = 0
    var settled: [String: Int] = [:]
    var unknownStatuses: [String: String] = [:]
}

/// Where one campaign stands, for progress lines and the terminal display.
public struct CampaignProgress: Sendable {
    public var campaign: String
    public var retried: Int
    public var settled: Int
    public var awaitingOutcome: Int
    public var toSend: Int
    public var requestsSent: Int
    public var allowedRate: Double
}

/// One journal write for every campaign of a plain run (issue 17). Each worker hands its flush over and
/// waits until it is durable; whatever arrives while a write is on its way goes in the next one. So a
/// hundred campaigns cost two transactions per flush (the accepted retries, then the settlements with their
/// write-back and the call counts), not two hundred, and one idle campaign adds no wait to another's flush.
/// The order of a worker's own writes is kept: a worker has one flush at a time.
actor JournalBatcher {
    struct Part: Sendable {
        var accepted: [(id: String, at: Date, deadline: Date)]
        var settled: [Settlement]
        var calls: APICallCounts
    }

    private let store: RunStore
    private let run: Int64
    private let crashPoints: CrashPoints
    private var queue: [(part: Part, done: CheckedContinuation<Int, any Error>)] = []
    private var writing = false
    private var intentQueue: [(ids: [String], witnesses: [Int], done: CheckedContinuation<IntentResult, any Error>)] = []
    private var committing = false
    typealias IntentResult = (intents: Set<String>, conflicts: Set<String>)

    private init(context: RunContext) {
        var store = context.store
        store.fence = nil
        self.store = store
        run = context.run.id
        crashPoints = context.crashPoints
    }

    private struct Entry: Sendable { weak var batcher: JournalBatcher? }
    private static let registry = Mutex<[ObjectIdentifier: Entry]>([:])

    /// The batcher of this run's workers (alive as long as one of them is).
    static func shared(for context: RunContext) -> JournalBatcher {
        registry.withLock { entries in
            let key = ObjectIdentifier(context)
            if let batcher = entries[key]?.batcher { return batcher }
            entries = entries.filter { $0.value.batcher != nil }
            let batcher = JournalBatcher(context: context)
            entries[key] = Entry(batcher: batcher)
            return batcher
        }
    }

    /// Records one worker's flush; returns how many of its settlements met a changed row (conflicts).
    func write(_ part: Part) async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in
            queue.append((part, continuation))
            if !writing {
                writing = true
                Task { await self.drain() }
            }
        }
    }

    /// One wave's intents, committed with those of every other campaign that asked meanwhile (one
    /// transaction: each row checked as `RunStore.commitIntents` does, before any of them is called).
    /// The sets returned cover the whole transaction; a worker looks up only its own ids.
    func commitIntents(_ ids: [String], witnesses: [Int]) async throws -> IntentResult {
        try await withCheckedThrowingContinuation { continuation in
            intentQueue.append((ids, witnesses, continuation))
            if !committing {
                committing = true
                Task { await self.drainIntents() }
            }
        }
    }

    private func drainIntents() async {
        while !intentQueue.isEmpty {
            let batch = intentQueue
            intentQueue = []
            do {
                let result = try await store.commitIntents(
                    run: run, messageIds: batch.flatMap(\.ids), witnesses: batch.flatMap(\.witnesses))
                crashPoints.reach("after-intent")
                for item in batch { item.done.resume(returning: result) }
            } catch {
                for item in batch { item.done.resume(throwing: error) }
            }
        }
        committing = false
    }

    private func drain() async {
        while !queue.isEmpty {
            let batch = queue
            queue = []
            do {
                let conflicts = try await record(batch.map(\.part))
                for (part, done) in batch {
                    done.resume(returning: conflicts.isEmpty ? 0 : part.settled.filter { conflicts.contains($0.messageId) }.count)
                }
            } catch {
                for (_, done) in batch { done.resume(throwing: error) }
            }
        }
        writing = false
    }

    private func record(_ parts: [Part]) async throws -> Set<String> {
        let accepted = parts.flatMap(\.accepted)
        if !accepted.isEmpty {
            try await store.recordAccepted(
                run: run, messageIds: accepted.map(\.id), acceptedAt: accepted.map(\.at), deadlines: accepted.map(\.deadline))
            crashPoints.reach("after-record-accepted")
        }
        let settled = parts.flatMap(\.settled)
        let calls = parts.map(\.calls)
        if settled.isEmpty {
            try await store.addCalls(run: run, calls)
            return []
        }
        crashPoints.reach("before-write-back")
        let result = try await store.settle(run: run, settled, apiCalls: calls)
        crashPoints.reach("after-write-back")
        return Set(result.conflicts)
    }
}
