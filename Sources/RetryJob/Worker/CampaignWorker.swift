import Foundation
import Logging
import NIOCore
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
    /// A page of one batch's list, for its members whose lifecycle wants a look (`BatchLook`).
    case batchLookPage(batch: String, after: String?)
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
    var pacer: SlidingWindowPacer
    let clock = ContinuousClock()
    let origin: ContinuousClock.Instant
    let maxInFlight: Int
    var rng = SystemRandomNumberGenerator()

    /// Every message of the campaign in this run, by id; `order` is the journal's (oldest first).
    var machines: [String: MessageLifecycle] = [:]
    var batchOf: [String: String] = [:]
    var openMessages = 0
    /// Indexes over the machines' needs, kept by `place` (entries are checked again when taken).
    var wantsView: Set<String> = []
    var intentQueue: [String] = []
    /// Each message's place in the order the journal gave them (oldest first): waves are taken in it.
    var rank: [String: Int] = [:]
    var nextRank = 0
    /// A message placed in `intentQueue` behind a younger one since the last wave was taken.
    var intentQueueUnsorted = false
    var intentQueueHead = 0
    var callQueue: [String] = []
    var inFlight = 0
    var busy: Set<String> = []

    var settled: [Settlement] = []
    var accepted: [(id: String, at: Date, deadline: Date)] = []
    var calls = APICallCounts()
    /// Requests per whole second for the report's rate chart; rides along with `calls` at each flush.
    var timeline: RequestTimeline
    /// When the next flush is due (on `now`'s clock). Flushes fall on the wall clock's half seconds, the
    /// same instants for every campaign, so the journal batcher finds a hundred campaigns' writes together
    /// (issue 17: unaligned, they went in about ten transactions per half second instead of one or two).
    var flushDue: Double = 0
    static let flushInterval = 0.5
    var flushing = false
    /// Passes of the loop in `run()` (RunResult.campaignLoopPasses).
    var loopPasses = 0
    var refilling = false
    /// Stale intents are being checked again before their calls (`recheckIntents`).
    var rechecking = false
    /// When each committed intent's row was last found as it was read (on `now`'s clock).
    var intentCheckedAt: [String: Double] = [:]
    var lastTick: Double = 0
    /// When the next wanted look falls due (from the latest scan).
    var nextViewDue = 0.0
    /// How long the loop naps before it looks again while the hold's or the lease's heartbeat is late.
    var leaseWait = 0.02
    /// No awaited outcome's poll deadline passes before this (kept by `place` and `tick`).
    var nextPollDeadline = -Double.infinity

    var backoffUntil: Double = 0
    /// Failures in a row, in the order the requests were sent: the backoff grows with it.
    var consecutiveFailures = 0
    /// The pacer's ticket of the latest-sent request that was answered, and of the latest-sent that failed.
    var lastAnsweredTicket = 0
    var lastFailedTicket = 0
    /// The latest ticket issued, and what it was when the last failure was noticed: a failure of a request
    /// already on its way then belongs to the same round and does not grow the backoff again.
    var lastIssuedTicket = 0
    var failureRoundEnd = 0
    /// Whether each of the latest settled requests failed (at most `recentOutcomesKept`), newest last.
    var recentFailures: [Bool] = []
    static let recentOutcomesKept = 20
    /// The pacer's ticket of the request the current task performs (send order).
    @TaskLocal static var requestTicket: Int?
    var lastAnswer: Double = 0
    let backoff = Backoff()

    /// List sweeps: one page at a time; `startCursor` skips the campaign's older history once a sweep
    /// found where this run's messages begin (the list's order is not documented, so a message not
    /// seen from there is read singly, never assumed absent).
    var sweepCursor: String?
    var sweepActive = false
    var sweepPageInFlight = false
    var sweepWanted: Set<String> = []
    var sweepPages = 0
    var sweepHit = false
    var sweepSkipCursor: String?
    var startCursor: String?
    /// The cursor the current sweep started from (nil: the list's beginning).
    var sweepStartedAt: String?
    /// Pages of the current sweep before the first one holding any of the run's messages.
    var sweepSkippedPages = 0
    var lastSweepEnd: Double = -1_000_000
    var pagesEstimate: Int
    /// Sweep pages that failed in a row (not 429s): a sweep is given up after three, and after two given up
    /// in a row sweeps pause for `sweepPause` (every look a single read meanwhile): a campaign's list that
    /// keeps timing out (a gateway in front of a long list) must not hold back the reads that single `GET`s
    /// would do (the run stopped as if Postman were unreachable).
    var sweepPageFailures = 0
    var abandonedSweeps = 0
    var sweepsPausedUntil = -Double.infinity
    static let sweepPause = 60.0
    /// Looks through batches' lists, when their members want looks and the campaign's list is too long to
    /// sweep for them (one per batch; its members are left out of sweeps and single reads meanwhile).
    var batchLooks: [String: BatchLook] = [:]
    /// A batch's list showed a member without its batch's status: looks through such lists seek only outcomes.
    var batchListsLackStatus = false
    /// Pages each batch's list took to read to its end (the whole-batch check or a look); `Int.max`: too long
    /// to look through, or its list refused.
    var batchListPages: [String: Int] = [:]

    var stats = WorkerStats()
    var requestsSent = 0

    /// Quiet hours began during this run: no more retries; what was not sent is left for the next run.
    var quietHoursBegan = false
    var quietHoursChecked = false
    var deferred: [String] = []
    var unsent: [String] = []
    var released = false

    /// A snapshot for the progress display.
    func progress() -> CampaignProgress {
        var awaiting = 0
        for id in wantsView { if case .awaiting = machines[id]?.phase { awaiting += 1 } }
        return CampaignProgress(
            campaign: campaign, retried: stats.accepted, settled: stats.settled.values.reduce(0, +),
            awaitingOutcome: awaiting, toSend: max(0, openMessages - awaiting) + notYetLoaded, requestsSent: requestsSent,
            allowedRate: pacer.currentLimit)
    }

    /// No request before this instant (the run's `notBefore`, or one second after a worker took the
    /// campaign's lease, so the previous holder's requests have left every 1-second window).
    let notBefore: ContinuousClock.Instant
    /// `run --worker`: false once this worker's lease on the campaign may have expired; nothing is sent then.
    let leaseValid: @Sendable () -> Bool

    /// The journal; fenced by the campaign's lease in `run --worker`.
    let store: RunStore
    /// A plain run's workers share one journal write per flush (nil with a lease fence: each campaign's
    /// writes are checked against its own lease).
    let batcher: JournalBatcher?

    init(
        campaign: String, apiKey: String, context: RunContext, first: RunStore.ItemChunk, chunkSize: Int,
        messagesInTable: Int,
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
        // Every request's answer or failure is recorded when its task ends, so the cap bounds only a task that
        // never ends. The slot is taken before the request reaches the HTTP client (a whole-batch call's mark in
        // the journal, a wait for a connection, a busy machine): a cap of the request timeout from the slot
        // let one sent late stop counting before it had even gone out (a review of the counted slots).
        pacer = SlidingWindowPacer(limit: limit, inFlightCap: context.settings.longestSendDelay.seconds + 60)
        timeline = RequestTimeline(campaign: campaign, rateLimit: limit)
        maxInFlight = max(2, limit)
        origin = ContinuousClock.now
        pagesEstimate = max(1, (messagesInTable + 999) / 1000)
        let settings = context.settings
        let policy = MessageLifecycle.Policy(
            pollTimeout: settings.pollTimeout.seconds, firstPollDelay: settings.firstPollDelay.seconds,
            maxPollInterval: settings.maxPollInterval.seconds, callTimeout: settings.requestTimeout.seconds)
        self.policy = policy
        self.chunkSize = chunkSize
        nextChunk = first.next
        notYetLoaded = first.remaining ?? 0
        let wall = Date().timeIntervalSince1970
        var members: [String: [String]] = [:]
        for item in first.items {
            guard let machine = Self.lifecycle(of: item, policy: policy, at: wall) else { continue }
            machines[item.messageId] = machine
            if let batch = item.batchId, !batch.isEmpty {  // an empty batch id is no batch
                batchOf[item.messageId] = batch
                members[batch, default: []].append(item.messageId)
            }
            openMessages += 1
            initialOrder.append(item.messageId)
            rank[item.messageId] = nextRank
            nextRank += 1
        }
        batchRunMembers = members.filter { $0.value.count >= WholeBatch.minimumMembers }
    }

    /// The journal's order (oldest first), in which the lifecycles are first filed.
    var initialOrder: [String] = []

    /// A campaign's selected messages come from the journal a chunk at a time, the next one once fewer
    /// than half a chunk are still open (issue 17: a million-row run holds two chunks of lifecycles, not a
    /// million). Entries past `selected` (intents, accepted retries, carried-over messages) all come first.
    let chunkSize: Int
    /// Where the next chunk starts (nil: every open message of the campaign is in memory).
    var nextChunk: RunStore.ItemCursor?
    var loadingChunk = false
    /// Selected messages still only in the journal (for the progress display).
    var notYetLoaded: Int
    /// Selected messages left for the next run by quiet hours without being read into memory.
    var deferredUnread = 0
    let policy: MessageLifecycle.Policy

    /// The lifecycle that continues a journal entry where it stands (nil: nothing left to do for it).
    static func lifecycle(of item: JournalItem, policy: MessageLifecycle.Policy, at wall: Double) -> MessageLifecycle? {
        let row = MessageLifecycle.Row(
            retryCount: item.snapRetryCount, baseRetryCount: item.baseRetryCount, batchId: item.batchId,
            recipient: item.recipientMasked)
        let durable: MessageLifecycle.Durable
        switch item.journalState {
        case .selected: durable = .selected
        case .intent:
            // A whole call of its batch with no answer recorded may have reached Postman up to a request's
            // lifetime after it was sent.
            let batchCalledAt =
                item.batchCallAnsweredAt?.timeIntervalSince1970
                ?? item.batchCallSentAt.map { $0.timeIntervalSince1970 + policy.callTimeout }
            durable = .intent(
                witness: item.attemptsBefore, intentAt: item.intentAt?.timeIntervalSince1970, batchCalledAt: batchCalledAt)
        case .accepted:
            durable = .accepted(
                acceptedAt: (item.acceptedAt ?? Date()).timeIntervalSince1970,
                deadline: (item.pollDeadline ?? Date()).timeIntervalSince1970, lastStatus: item.lastStatus,
                witness: item.attemptsBefore)
        case .done: return nil
        }
        return MessageLifecycle(restoring: durable, row: row, policy: policy, at: wall)
    }

    var now: Double { (clock.now - origin).seconds }
    var wallNow: Double { Date().timeIntervalSince1970 }
    var stopping: Bool { context.stopReason != nil }
    var logger: Logger {
        var logger = context.logger
        logger[metadataKey: "campaign"] = "\(campaign)"
        return logger
    }

    // MARK: - Feeding the lifecycles

    /// Batches known not to be retryable: no call for any of their members that has not been sent.
    var blockedBatches: Set<String> = []

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
    var batchChecks: [String: BatchCheck] = [:]
    /// Members that are ready, held back until their batch is decided.
    var held: [String: Set<String>] = [:]
    var batchReadQueue: [String] = []
    var batchReadInFlight: Set<String> = []
    /// Batches whose list failed once (not a 429) while being read for the whole-batch decision.
    var batchCheckFailures: Set<String> = []
    var batchCallQueue: [String] = []
    var queuedBatchCalls: Set<String> = []
    /// Batch calls sent back to the queue once because marking them sent took too long.
    var slowBatchMarks: Set<String> = []
    /// How long marking a batch call sent may take before the call waits its turn again (seconds).
    static let slowBatchMark = 0.5
    /// Batches called whole in any run (never again), read at the start.
    var calledBatches: Set<String> = []
    var committingBatch = false

    /// Run members per batch, for batches that could go whole.
    let batchRunMembers: [String: [String]]

    var pendingBatchCommits: [String] = []

    func run() async {
        if context.settings.wholeBatchRetries, !batchRunMembers.isEmpty {
            do { calledBatches = try await store.calledBatches(campaign: campaign) } catch { fail(error) }
        }
        for id in initialOrder { place(id) }
        initialOrder = []
        context.noteLifecycles(machines.count)
        let notBefore = (self.notBefore - origin).seconds
        lastAnswer = now
        // Reads that settle lost answers may start this long after a signal: with the request timeout (5 s)
        // and the final flush, the process still exits before the signal backstop (8 s) and the contract's 10 s.
        let stopGrace = 2.0
        var stopSeenAt: Double?
        await withDiscardingTaskGroup { group in
            while true {
                loopPasses += 1
                let t = now
                if t - lastTick >= 0.25 || wallNow >= nextPollDeadline { tick() }
                // Journal writes and the next wave's intents go to the database from child tasks: a slot
                // of the budget not used when it opens is lost for good, so the sending loop never waits
                // on PostgreSQL. One flush and one refill at a time keep the journal's order.
                if !flushing, t >= flushDue || settled.count >= 200 {
                    flushing = true
                    scheduleNextFlush()
                    group.addTask { await self.flush() }
                }
                if !refilling, !stopping, !quietHoursBegan, callQueue.count < max(1, waveSize / 2),
                    intentQueueHead < intentQueue.count
                {
                    refilling = true
                    group.addTask { await self.refillWave() }
                }
                if !rechecking, !stopping, !quietHoursBegan, !callQueue.isEmpty || !batchCallQueue.isEmpty {
                    let stale = staleIntentsAhead(at: t)
                    if !stale.isEmpty {
                        rechecking = true
                        group.addTask { await self.recheckIntents(stale) }
                    }
                }
                if !loadingChunk, nextChunk != nil, !stopping, quietHoursBegan || openMessages < max(1, chunkSize / 2) {
                    loadingChunk = true
                    group.addTask { await self.loadNextChunk() }
                }
                if !committingBatch, !pendingBatchCommits.isEmpty {
                    committingBatch = true
                    let batch = pendingBatchCommits.removeFirst()
                    group.addTask { await self.commitBatch(batch) }
                }
                if stopping {
                    if !released { releaseUnsent() }
                    stopSeenAt = stopSeenAt ?? context.stopNoticedAt.map { min(t, ($0 - origin).seconds) } ?? t
                    // Settle unknown retries for a while after a signal; then leave them to the next run.
                    let giveUp = t - stopSeenAt! > stopGrace || context.stopReason != .signal
                    if inFlight == 0 && !refilling && !rechecking && (giveUp || !hasUnsettled) { break }
                    if giveUp {
                        // Waiting for the answers in flight and a wave's commit, which ring as they end (a
                        // 20 ms poll here spun for as long as the database held the wave back).
                        await nap(until: t + napCap)
                        continue
                    }
                } else if isFinished {
                    break
                }
                if inFlight >= maxInFlight {
                    // An answer rings the loop awake.
                    await nap(until: t + napCap)
                    continue
                }
                if !leaseValid() {
                    // The heartbeat is late: wait for it rather than risk sending next to a new holder. Its
                    // renewal rings nothing, so look again after 20 ms, then less often the longer it is late
                    // (a slow database must not make every worker poll 50 times a second).
                    await nap(until: t + leaseWait)
                    leaseWait = min(leaseWait * 2, 0.25)
                    continue
                }
                leaseWait = 0.02
                let slot = max(pacer.earliestSend(now: t), backoffUntil, notBefore)
                if slot > t {
                    // Until the slot opens (an answer may open it sooner: it rings), or the next flush is due
                    // (a slot a backoff or the first send's wait put seconds away must not hold flushes back).
                    await nap(until: min(slot, napLimit(t)))
                    continue
                }
                guard let action = nextAction(at: t) else {
                    // Nothing to send. An answer, a committed wave or a batch intent rings the loop awake;
                    // else it sleeps until the next look falls due, or the next tick or flush.
                    // While a sweep's page is on its way no read goes (its answer rings): a look falling due
                    // meanwhile would make every pass nap 2 ms until a slow page came back.
                    let wall = wallNow
                    let viewDue = readsWaitForPage ? Double.infinity : nextViewDue
                    let due = min(t + max(0.002, viewDue - wall), t + max(0, nextPollDeadline - wall), napLimit(t))
                    await nap(until: max(t + 0.002, due))
                    continue
                }
                let ticket = pacer.recordSend(at: now)
                lastIssuedTicket = ticket
                requestsSent += 1
                inFlight += 1
                switch action {
                case .retry: calls.retry += 1
                case .retryBatch: calls.batchRetry += 1
                case .read, .listPage, .batchPage, .batchLookPage: calls.poll += 1
                }
                timeline.request()
                group.addTask {
                    let timing = ResponseTiming()
                    await ResponseTiming.$current.withValue(timing) {
                        await Self.$requestTicket.withValue(ticket) { await self.perform(action) }
                    }
                    await self.answered(ticket: ticket, headArrivedAt: timing.headArrivedAt)
                }
            }
        }
        await finish()
    }

    // MARK: - Sleeping without polling

    /// The longest the loop sleeps without being rung. Every deadline of its own (a slot, a look, a poll
    /// deadline, a flush) ends a nap sooner, answers and committed waves ring it, and the run's loop rings
    /// it on a stop; a lease that lapsed matters only to a send, which checks it first. (It was a quarter
    /// second: three idle campaigns woke the process twelve times a second for nothing; issue 17.)
    static let longestNap = 1.0
    /// After a stop, or while requests are in flight, the loop looks four times a second: a stop the run's
    /// loop could not ring through (blocked on the database) is then seen as soon as before, and the reads
    /// of the grace end on time (a worker with nothing in flight has no answer to settle).
    var napCap: Double { stopping || inFlight > 0 ? 0.25 : Self.longestNap }
    /// The latest a nap that waits for a slot or a look may end: its cap, or the next flush while that is
    /// still ahead. A flush still on its way when the next falls due rings as it ends: that due time, then
    /// past, would make every pass nap 2 ms (with writes slower than the flush interval, a hundred workers
    /// woke 50,000 times a second; docs/benchmarks.md).
    func napLimit(_ t: Double) -> Double { flushDue > t ? min(flushDue, t + napCap) : t + napCap }
    /// The loop's sleep, ended early by `ring()`. One timer at a time is armed (a later nap reuses one
    /// that fires no later than it wants): a hundred workers that each polled every few milliseconds
    /// spent most of the job's CPU on libdispatch's timers (docs/benchmarks.md, issue 17).
    var waiting: CheckedContinuation<Void, Never>?
    /// When the armed timer fires (nil: none armed).
    var armedAt: Double?
    var armedTimer: Scheduled<Void>?

    func nap(until deadline: Double) async {
        let start = now
        guard deadline > start else { return }
        if armedAt.map({ $0 > deadline || $0 <= start }) ?? true {
            // A later timer still armed would only wake the loop for nothing: it goes.
            armedTimer?.cancel()
            armedAt = deadline
            // A timer of the event loop this runs on (the job's executor, see postman-retry's main): Task.sleep
            // went through libdispatch's timer thread, a semaphore and a wake-up of another thread each time.
            armedTimer = LoopTimer.schedule(in: .seconds(deadline - start)) { [weak self] in
                guard let self else { return }
                Task { await self.timerFired(deadline) }
            }
        }
        await withCheckedContinuation { continuation in waiting = continuation }
    }

    func timerFired(_ deadline: Double) {
        if armedAt == deadline {
            armedAt = nil
            armedTimer = nil
        }
        ring()
    }

    /// Something the loop waits for happened: it looks again now.
    func ring() {
        guard let continuation = waiting else { return }
        waiting = nil
        continuation.resume()
    }

    var isFinished: Bool {
        inFlight == 0 && !refilling && !rechecking && !committingBatch && !loadingChunk && openMessages == 0 && nextChunk == nil
    }

    /// A retry whose answer is unknown, or refused and not yet read back, is still open (only reads may
    /// settle it after a stop).
    var hasUnsettled: Bool { wantsView.contains { Self.settlesACall(machines[$0]?.phase) } }

    static func settlesACall(_ phase: MessageLifecycle.Phase?) -> Bool {
        switch phase {
        case .unsettled?, .reconciling?: return true
        default: return false
        }
    }

    /// Awaited outcomes whose poll deadline has passed end as pending. Only those get the event: a tick
    /// went to each of 2,000 awaited messages four times a second, and each one made the next read scan
    /// every waiting message again (issue 17).
    func tick() {
        lastTick = now
        let wall = wallNow
        guard wall >= nextPollDeadline else { return }
        var soonest = Double.infinity
        var due: [String] = []
        for id in wantsView {
            guard case .awaiting(let awaiting) = machines[id]?.phase else { continue }
            // A message being read keeps its deadline in view: a read that fails on the way does not
            // `place` it again, and it must still end as pending when its deadline passes.
            if wall >= awaiting.endsAt, !beingRead(id) {
                due.append(id)
            } else if wall >= awaiting.endsAt {
                // Past its deadline but being read: looked at again after the read, or in a quarter second
                // (its past deadline would make every pass of the loop scan again and nap 2 ms).
                soonest = min(soonest, wall + 0.25)
            } else {
                // A restored retry waiting for its one look ends at its look, or when its window for one
                // ends (`Awaiting.endsAt`): its past deadline must not wake this scan on every pass.
                soonest = min(soonest, awaiting.endsAt)
            }
        }
        nextPollDeadline = soonest
        for id in due { apply(id, .tick(at: wall)) }
    }

    /// A read, or a page of a sweep or a look that may show it, is on its way: its answer comes within the
    /// request timeout, and a message it shows final is not ended `pending` just before.
    func beingRead(_ id: String) -> Bool {
        if busy.contains(id) { return true }
        if sweepPageInFlight, sweepWanted.contains(id) { return true }
        guard !batchLooks.isEmpty, let batch = batchOf[id], let look = batchLooks[batch] else { return false }
        return look.pageInFlight && look.wanted.contains(id)
    }

    /// A look was wanted, or a read ended, since the last scan: the next scan may find something new.
    var viewsChanged = true

    /// Bad bodies per message: one may be a cut connection; from the second on it is the message itself.
    var badBodies: [String: Int] = [:]

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
