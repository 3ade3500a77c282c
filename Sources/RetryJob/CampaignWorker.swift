import Foundation
import Logging
import PostmanAPI
import RetryCore

/// A message as one campaign worker tracks it.
struct WorkItem: Sendable {
    var messageId: String
    var batchId: String?
    var recipient: String
    var snapRetryCount: Int
    var baseRetryCount: Int
    var attemptsBefore: Int?
    var intentAt: Date?
    var acceptedAt: Date?
    var deadline: Date?
    var nextPoll: Double = 0
    var pollCount = 0
    var lastStatus: String?
    var postmanRetries: Int?
    /// Poll this one with a single read (a list sweep did not show it, or showed no attempt history).
    var forceSingle = false
    /// Accepted by an earlier process of this run: read at least once before its deadline can make it
    /// pending, so an outcome reached while the job was down (killed, restarted) is not lost.
    var resumed = false

    init(_ item: JournalItem) {
        messageId = item.messageId
        batchId = item.batchId
        recipient = item.recipientMasked
        snapRetryCount = item.snapRetryCount
        baseRetryCount = item.baseRetryCount
        attemptsBefore = item.attemptsBefore
        intentAt = item.intentAt
        acceptedAt = item.acceptedAt
        deadline = item.pollDeadline
        lastStatus = item.lastStatus
    }
}

/// The requests a worker can send; each costs one unit of the campaign's rate budget.
enum WorkerAction: Sendable {
    case retry(WorkItem)
    /// Read a message whose retry answer was lost: its attempt history says whether the retry happened.
    case settle(WorkItem)
    /// Read a message Postman refused to retry because it is not in `failure`: the row follows Postman.
    case reconcile(WorkItem)
    case poll(WorkItem)
    case listPage(after: String?)

    var isRetry: Bool { if case .retry = self { return true } else { return false } }
}

/// Works one campaign: retries in rate-limited waves, settles unknown outcomes, polls, records.
/// Every request goes through one pacer, so the campaign never sees more than its limit in any
/// second, whatever mix of retries and reads it sends.
actor CampaignWorker {
    let campaign: String
    let apiKey: String
    let context: RunContext
    private var pacer: SlidingWindowPacer
    private let clock = ContinuousClock()
    private let origin: ContinuousClock.Instant
    private let maxInFlight: Int
    private var rng = SystemRandomNumberGenerator()

    private var toRetry: [WorkItem]
    private var toRetryIndex = 0
    private var ready: [WorkItem] = []
    private var settleQueue: [WorkItem] = []
    private var reconcileQueue: [WorkItem] = []
    private var pending: [String: WorkItem] = [:]
    private var inFlight = 0
    private var busy: Set<String> = []
    private var blockedBatches: Set<String> = []

    private var settled: [Settlement] = []
    private var accepted: [(id: String, at: Date, deadline: Date)] = []
    private var calls = APICallCounts()
    /// Requests per whole second for the report's rate chart; rides along with `calls` at each flush.
    private var timeline: RequestTimeline
    private var lastFlush: Double = 0
    private var flushing = false
    /// When the next awaited message falls due for a poll (from the latest look at them).
    private var nextPollDue = 0.0
    private var refilling = false
    private var lastDeadlineCheck: Double = 0

    private var backoffUntil: Double = 0
    private var consecutiveFailures = 0
    private var lastAnswer: Double = 0
    private let backoff = Backoff()

    private var sweepCursor: String?
    private var sweepActive = false
    private var sweepPageInFlight = false
    private var sweepWanted: Set<String> = []
    private var sweepPages = 0
    private var lastSweepEnd: Double = -1_000_000
    private var pagesEstimate: Int

    private(set) var stats = WorkerStats()
    private var requestsSent = 0

    /// Quiet hours began during this run: no more retries; what was not sent is left for the next run.
    private var quietHoursBegan = false
    private var deferred: [String] = []

    /// A snapshot for the progress display.
    func progress() -> CampaignProgress {
        CampaignProgress(
            campaign: campaign, retried: stats.accepted, settled: stats.settled.values.reduce(0, +),
            awaitingOutcome: pending.count, toSend: toRetry.count - toRetryIndex + ready.count + settleQueue.count,
            requestsSent: requestsSent, allowedRate: pacer.currentLimit)
    }

    /// No request before this instant (the run's `notBefore`, or one second after a worker took the
    /// campaign's lease, so the previous holder's requests have left every 1-second window).
    private let notBefore: ContinuousClock.Instant
    /// `run --worker`: false once this worker's lease on the campaign may have expired; nothing is sent then.
    private let leaseValid: @Sendable () -> Bool

    /// The journal; fenced by the campaign's lease in `run --worker`.
    private let store: RunStore

    init(
        campaign: String, apiKey: String, context: RunContext, items: [JournalItem], messagesInTable: Int,
        notBefore: ContinuousClock.Instant? = nil, leaseValid: @escaping @Sendable () -> Bool = { true },
        fence: LeaseFence? = nil
    ) {
        var store = context.store
        store.fence = fence
        self.store = store
        self.notBefore = notBefore ?? context.notBefore
        self.leaseValid = leaseValid
        self.campaign = campaign
        self.apiKey = apiKey
        self.context = context
        let limit = context.settings.rateLimit(for: campaign)
        pacer = SlidingWindowPacer(limit: limit)
        timeline = RequestTimeline(campaign: campaign, rateLimit: limit)
        maxInFlight = max(2, limit)
        origin = ContinuousClock.now
        pagesEstimate = max(1, (messagesInTable + 999) / 1000)
        var retry: [WorkItem] = []
        for item in items {
            var work = WorkItem(item)
            switch item.state {
            case "selected": retry.append(work)
            case "intent": settleQueue.append(work)
            case "accepted":
                work.nextPoll = 0
                work.resumed = true
                pending[work.messageId] = work
            default: break
            }
        }
        toRetry = retry
    }

    private var now: Double { (clock.now - origin).seconds }
    private var stopping: Bool { context.stopReason != nil }
    private var logger: Logger {
        var logger = context.logger
        logger[metadataKey: "campaign"] = "\(campaign)"
        return logger
    }

    // MARK: - Main loop

    func run() async {
        let notBefore = (self.notBefore - origin).seconds
        lastAnswer = now
        let stopGrace = 6.0
        var stopSeenAt: Double?
        await withDiscardingTaskGroup { group in
            while true {
                let t = now
                if t - lastDeadlineCheck >= 0.25 { expireDeadlines() }
                // Journal writes and the next wave's intents go to the database from child tasks: a slot
                // of the budget not used when it opens is lost for good, so the sending loop never waits
                // on PostgreSQL. One flush and one refill at a time keep the journal's order.
                if !flushing, t - lastFlush >= 0.5 || settled.count >= 200 {
                    flushing = true
                    group.addTask { await self.flush() }
                }
                if !refilling, !stopping, !quietHoursBegan, ready.count < max(1, waveSize / 2), toRetryIndex < toRetry.count {
                    refilling = true
                    group.addTask { await self.refillWave() }
                }
                if stopping {
                    stopSeenAt = stopSeenAt ?? t
                    // Settle unknown retries for a while after a signal; then leave them to the next run.
                    let giveUp = t - stopSeenAt! > stopGrace || context.stopReason != .signal
                    if inFlight == 0 && (settleQueue.isEmpty || giveUp) { break }
                    if giveUp {
                        try? await Task.sleep(for: .milliseconds(20))
                        continue
                    }
                } else if isFinished {
                    break
                }
                if inFlight >= maxInFlight {
                    try? await Task.sleep(for: .milliseconds(5))
                    continue
                }
                if !leaseValid() {
                    // The heartbeat is late: wait for it rather than risk sending next to a new holder.
                    try? await Task.sleep(for: .milliseconds(20))
                    continue
                }
                let slot = max(pacer.earliestSend(now: t), backoffUntil, notBefore)
                if slot > t {
                    try? await Task.sleep(for: .seconds(min(slot - t, 0.05)))
                    continue
                }
                guard let action = nextAction(at: t) else {
                    // Nothing to send. While answers or a wave are on their way, look again soon; when only
                    // outcomes are awaited, sleep until the next poll falls due (this idle loop was most of
                    // the job's CPU in the polling tail).
                    let idle = refilling ? 0.002 : (inFlight > 0 || sweepActive) ? 0.01 : min(0.05, max(0.002, nextPollDue - t))
                    try? await Task.sleep(for: .seconds(idle))
                    continue
                }
                let ticket = pacer.recordSend(at: now)
                requestsSent += 1
                inFlight += 1
                if action.isRetry { calls.retry += 1 } else { calls.poll += 1 }
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

    private var isFinished: Bool {
        inFlight == 0 && !refilling && toRetryIndex >= toRetry.count && ready.isEmpty && settleQueue.isEmpty
            && reconcileQueue.isEmpty && pending.isEmpty
    }

    /// What to send next, in order: settle unknown retries, reconcile refusals, polls that are due,
    /// then the next retry of the current wave.
    private func nextAction(at t: Double) -> WorkerAction? {
        if let index = settleQueue.firstIndex(where: { !busy.contains($0.messageId) }) {
            let item = settleQueue.remove(at: index)
            busy.insert(item.messageId)
            return .settle(item)
        }
        if stopping { return nil }
        if !reconcileQueue.isEmpty {
            let item = reconcileQueue.removeFirst()
            busy.insert(item.messageId)
            return .reconcile(item)
        }
        if let poll = nextPoll(at: t) { return poll }
        // Checked before each retry too, not only when a wave is committed: a wave ready when quiet hours
        // begin is not sent.
        if !quietHoursBegan, !ready.isEmpty, context.settings.inQuietHours { deferRemainingRetries() }
        if quietHoursBegan, !ready.isEmpty {
            // Intents committed before quiet hours began, or lost answers that settled as "not
            // accepted": not sent now; their intents are reverted at the end, then deferred.
            unsent.append(contentsOf: ready.map(\.messageId))
            deferred.append(contentsOf: ready.map(\.messageId))
            ready = []
        }
        if !ready.isEmpty, !stopping {
            let item = ready.removeFirst()
            busy.insert(item.messageId)
            context.crashPoints.reach("before-retry-call")
            return .retry(item)
        }
        return nil
    }

    /// Chooses between a list sweep (pages of 1,000 for the whole campaign) and single reads, by
    /// which needs fewer calls for the messages whose poll is due.
    private func nextPoll(at t: Double) -> WorkerAction? {
        if sweepActive {
            guard !sweepPageInFlight else { return nil }
            sweepPageInFlight = true
            return .listPage(after: sweepCursor)
        }
        var due: [WorkItem] = []
        var soonest = Double.infinity
        for item in pending.values where !busy.contains(item.messageId) {
            if item.nextPoll <= t { due.append(item) } else { soonest = min(soonest, item.nextPoll) }
        }
        nextPollDue = soonest
        guard !due.isEmpty else { return nil }
        let singles = due.filter(\.forceSingle)
        let sweepable = due.count - singles.count
        if sweepable >= pagesEstimate && sweepable > 1 {
            if t - lastSweepEnd >= context.settings.firstPollDelay.seconds {
                sweepActive = true
                sweepPageInFlight = true
                sweepCursor = nil
                sweepPages = 0
                sweepWanted = Set(pending.keys)
                return .listPage(after: nil)
            }
            // A sweep is due soon and will cover these; single reads now would cost more.
            guard let item = singles.min(by: { $0.nextPoll < $1.nextPoll }) else { return nil }
            busy.insert(item.messageId)
            return .poll(item)
        }
        guard let item = due.min(by: { $0.nextPoll < $1.nextPoll }) else { return nil }
        busy.insert(item.messageId)
        return .poll(item)
    }

    /// About one second of the campaign's budget.
    private var waveSize: Int { max(1, Int(pacer.currentLimit * context.settings.waveSeconds)) }

    /// Commits the intents of the next wave (about one second of the campaign's budget) in one
    /// transaction, after checking each row is still as it was read.
    private func refillWave() async {
        defer { refilling = false }
        guard !stopping, toRetryIndex < toRetry.count else { return }
        if quietHoursBegan || context.settings.inQuietHours {
            deferRemainingRetries()
            return
        }
        let size = waveSize
        var wave: [WorkItem] = []
        while wave.count < size, toRetryIndex < toRetry.count {
            let item = toRetry[toRetryIndex]
            toRetryIndex += 1
            if let batch = item.batchId, blockedBatches.contains(batch) {
                record(item, outcome: "batch_not_retryable", httpStatus: nil, code: "batch_not_found_or_is_not_retryable")
                continue
            }
            wave.append(item)
        }
        guard !wave.isEmpty else { return }
        do {
            let result = try await store.commitIntents(run: context.run.id, messageIds: wave.map(\.messageId))
            context.crashPoints.reach("after-intent")
            let committedAt = Date()
            for var item in wave {
                if result.intents.contains(item.messageId) {
                    item.intentAt = committedAt
                    ready.append(item)
                } else if result.conflicts.contains(item.messageId) {
                    stats.conflicts += 1
                    logger.info("row changed since it was read; not retried", metadata: ["message": "\(item.messageId)"])
                } else {
                    // Its journal entry moved on without this worker (it should not happen: writes are
                    // fenced). Left open, so the run is not completed before it is worked again.
                    logger.warning("journal entry no longer selected; left for a later pass", metadata: ["message": "\(item.messageId)"])
                }
            }
        } catch {
            fail(error)
        }
    }

    /// Quiet hours: the messages not yet retried wait for the next run; polling goes on.
    private func deferRemainingRetries() {
        let rest = toRetry[toRetryIndex...].map(\.messageId)
        toRetryIndex = toRetry.count
        if !quietHoursBegan, let quiet = context.settings.quietHours {
            logger.notice(
                "quiet hours: no more retries in this run; the rest is left for the next run",
                metadata: ["quiet_hours": "\(quiet)", "left": "\(rest.count)"])
        }
        quietHoursBegan = true
        deferred.append(contentsOf: rest)
    }

    // MARK: - Requests

    private func perform(_ action: WorkerAction) async {
        let client = context.client
        switch action {
        case .retry(let item):
            do {
                let result = try await client.retryMessage(campaignId: campaign, messageId: item.messageId, apiKey: apiKey)
                context.crashPoints.reach("after-retry-call")
                answered()
                guard case .accepted(let message) = result else { break }
                onAccepted(item, message: message)
            } catch {
                onRetryError(item, error: Self.apiError(error))
            }
        case .settle(let item):
            do {
                let message = try await client.getMessage(campaignId: campaign, messageId: item.messageId, apiKey: apiKey)
                answered()
                onSettleRead(item, message: message)
            } catch {
                onReadError(item, error: Self.apiError(error), requeue: { $0.settleQueue.append($1) }) {
                    // 404: the message is unknown to Postman.
                    $0.record($1, outcome: "not_found", httpStatus: 404, code: $2.code)
                }
            }
        case .reconcile(let item):
            do {
                let message = try await client.getMessage(campaignId: campaign, messageId: item.messageId, apiKey: apiKey)
                answered()
                let update = FinalState.reconciled(
                    rowRetryCount: item.snapRetryCount, postmanRetries: message.retriesUsed,
                    latestStatus: message.latestStatus, newestError: message.newestErrorCode)
                record(
                    item, outcome: "reconciled", httpStatus: 400,
                    code: "message_not_found_or_retry_message_not_in_failure_status", update: update, message: message)
            } catch {
                onReadError(item, error: Self.apiError(error), requeue: { $0.reconcileQueue.append($1) }) {
                    $0.record($1, outcome: "not_found", httpStatus: 404, code: $2.code)
                }
            }
        case .poll(let item):
            do {
                let message = try await client.getMessage(campaignId: campaign, messageId: item.messageId, apiKey: apiKey)
                answered()
                onPolled(item.messageId, message: message, fromList: false)
            } catch {
                onReadError(item, error: Self.apiError(error), requeue: { worker, item in
                    var later = item
                    later.nextPoll = worker.now + 1
                    worker.pending[item.messageId] = later
                }) { worker, item, _ in
                    // A retried message that Postman no longer knows: keep polling until the deadline.
                    var later = item
                    later.nextPoll = worker.now + worker.context.settings.maxPollInterval.seconds
                    worker.pending[item.messageId] = later
                }
            }
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
                    // The list endpoint refused (4xx): fall back to single reads.
                    endSweep(sawAll: false)
                }
            }
        }
        inFlight -= 1
        switch action {
        case .retry(let item), .settle(let item), .reconcile(let item), .poll(let item): busy.remove(item.messageId)
        case .listPage: break
        }
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

    private func onAccepted(_ item: WorkItem, message: PostmanMessage?) {
        var work = item
        let acceptedAt = Date()
        work.acceptedAt = acceptedAt
        work.deadline = acceptedAt.addingTimeInterval(context.settings.pollTimeout.seconds)
        work.nextPoll = now + context.settings.firstPollDelay.seconds
        work.lastStatus = message?.latestStatus ?? "created"
        pending[work.messageId] = work
        accepted.append((work.messageId, acceptedAt, work.deadline!))
        stats.accepted += 1
    }

    private func onRetryError(_ item: WorkItem, error: PostmanAPIError) {
        guard case .http(let status) = error.kind else {
            // Timeout, dropped connection, unparsable answer: the retry may or may not have happened.
            noteFailure(error)
            if error.mayHaveReachedServer { settleQueue.append(item) } else { ready.insert(item, at: 0) }
            return
        }
        switch (status, error.code) {
        case (400, "message_not_found_or_retry_message_not_in_failure_status"):
            answered()
            reconcileQueue.append(item)
        case (400, "too_many_message_attempts_error"):
            answered()
            record(item, outcome: "exhausted", httpStatus: 400, code: error.code, update: FinalState.exhausted)
        case (400, "batch_not_found_or_is_not_retryable"):
            answered()
            if let batch = item.batchId { blockedBatches.insert(batch) }
            record(item, outcome: "batch_not_retryable", httpStatus: 400, code: error.code)
        case (401, _), (403, _):
            // The refused call is not a retry: the intent goes back to `selected` at the end.
            unsent.append(item.messageId)
            context.stop(.refused("HTTP \(status)\(error.code.map { " \($0)" } ?? "")"))
        case (429, _):
            answered()
            calls.rateLimited += 1
            timeline.rateLimited()
            pacer.recordRateLimited(at: now)
            honourRetryAfter(error)
            ready.insert(item, at: 0)  // dropped, not queued, by Postman: send it again
        case (500..., _):
            noteFailure(error)
            settleQueue.append(item)
        default:
            answered()
            record(item, outcome: "rejected", httpStatus: status, code: error.code, postmanMessage: error.message)
        }
    }

    private var unsent: [String] = []

    private func onSettleRead(_ item: WorkItem, message: PostmanMessage) {
        learnBatches(message)
        let before = item.attemptsBefore ?? item.snapRetryCount + 1
        let settlement = RetrySettlement.settle(
            attemptsBefore: before, attemptsNow: message.attemptCount, latestStatus: message.latestStatus,
            newestAttemptAt: message.newestAttempt?.createdAt, intentAt: item.intentAt)
        switch settlement {
        case .accepted:
            onAccepted(item, message: nil)
            onPolled(item.messageId, message: message, fromList: false)
        case .notAccepted:
            if let batch = item.batchId, blockedBatches.contains(batch) {
                record(item, outcome: "batch_not_retryable", httpStatus: nil, code: "batch_not_found_or_is_not_retryable")
                return
            }
            var again = item
            again.attemptsBefore = message.attemptCount ?? before
            if stopping {
                unsent.append(item.messageId)
            } else {
                ready.insert(again, at: 0)
            }
        }
    }

    /// A read of a retried message (single or from a list page).
    private func onPolled(_ id: String, message: PostmanMessage, fromList: Bool) {
        guard var item = pending[id] else { return }
        let status = message.latestStatus
        item.lastStatus = status
        item.postmanRetries = message.retriesUsed ?? item.postmanRetries
        if !PostmanStatus.isKnown(status) {
            logger.warning("unknown Postman status; treated as in flight", metadata: ["message": "\(id)", "status": "\(status)"])
            stats.unknownStatuses[id] = status
        }
        let final = PostmanStatus.isFinal(status, recipient: message.recipient ?? item.recipient)
        if final {
            if message.attemptCount == nil {
                // A list item without its attempt history: read it singly for the count and the error.
                item.forceSingle = true
                item.nextPoll = now
                pending[id] = item
                return
            }
            pending[id] = nil
            let update = FinalState.afterAcceptedRetry(
                rowRetryCount: item.baseRetryCount, postmanRetries: message.retriesUsed, lastStatus: status,
                newestError: message.newestErrorCode, final: true)
            record(
                item, outcome: "retried", result: PostmanStatus.isSuccess(status) ? "succeeded" : "failed", httpStatus: nil,
                code: nil, update: update, message: message)
            return
        }
        item.pollCount += 1
        item.forceSingle = false
        let delay = min(
            context.settings.maxPollInterval.seconds,
            context.settings.firstPollDelay.seconds * pow(2, Double(min(item.pollCount, 10) - 1)))
        item.nextPoll = now + delay
        pending[id] = item
    }

    private func onPage(_ page: PostmanPage) {
        sweepPageInFlight = false
        sweepPages += 1
        for message in page.messages {
            learnBatches(message)
            guard sweepWanted.remove(message.id) != nil else { continue }
            onPolled(message.id, message: message, fromList: true)
        }
        sweepCursor = page.endCursor
        if !page.hasNextPage || sweepWanted.isEmpty || page.endCursor == nil { endSweep(sawAll: sweepWanted.isEmpty) }
    }

    private func endSweep(sawAll: Bool) {
        sweepActive = false
        sweepPageInFlight = false
        lastSweepEnd = now
        pagesEstimate = max(1, sweepPages)
        // Those the list did not show are read one by one.
        for id in sweepWanted {
            guard var item = pending[id] else { continue }
            item.forceSingle = true
            pending[id] = item
        }
        sweepWanted = []
    }

    private func learnBatches(_ message: PostmanMessage) {
        for batch in message.batches {
            if let status = batch.status, status != "messages_enqueued", status != "messages_enqueuing_failed" {
                blockedBatches.insert(batch.id)
            }
        }
    }

    /// Shared handling of a failed read: 401/403 stop the run, 429/5xx/timeouts back off and go
    /// again, 404 goes to `notFound`.
    private func onReadError(
        _ item: WorkItem, error: PostmanAPIError, requeue: (isolated CampaignWorker, WorkItem) -> Void,
        notFound: (isolated CampaignWorker, WorkItem, PostmanAPIError) -> Void
    ) {
        if case .http(404) = error.kind {
            answered()
            notFound(self, item, error)
            return
        }
        if handleTransient(error) {
            requeue(self, item)
            return
        }
        if case .http(let status) = error.kind, status == 401 || status == 403 { return }
        // Another 4xx on a read: keep the message for the next run rather than guess.
        answered()
        logger.warning(
            "unexpected answer to a read; message left for the next run",
            metadata: ["message": "\(item.messageId)", "error": "\(error)"])
        if pending[item.messageId] != nil { pending[item.messageId] = nil }
        stats.leftForNextRun += 1
    }

    /// 429 / 5xx / timeout / dropped connection / bad body: back off; 401/403: stop. Returns true
    /// when the request should simply be sent again later.
    private func handleTransient(_ error: PostmanAPIError) -> Bool {
        switch error.kind {
        case .http(429):
            answered()
            calls.rateLimited += 1
            timeline.rateLimited()
            pacer.recordRateLimited(at: now)
            honourRetryAfter(error)
            return true
        case .http(401), .http(403):
            context.stop(.refused("HTTP \(error.httpStatus ?? 0)\(error.code.map { " \($0)" } ?? "")"))
            return false
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

    private func record(
        _ item: WorkItem, outcome: String, result: String? = nil, httpStatus: Int?, code: String?, update: RowUpdate? = nil,
        message: PostmanMessage? = nil, postmanMessage: String? = nil
    ) {
        pending[item.messageId] = nil
        settled.append(
            Settlement(
                messageId: item.messageId, outcome: outcome, result: result, update: update,
                lastStatus: message?.latestStatus ?? item.lastStatus, postmanRetries: message?.retriesUsed,
                newestError: message?.newestErrorCode, httpStatus: httpStatus, postmanCode: code,
                postmanMessage: postmanMessage.map { String($0.prefix(500)) },
                unknownStatus: stats.unknownStatuses[item.messageId], acceptedAt: item.acceptedAt))
        stats.settled[outcome + (result.map { "/" + $0 } ?? ""), default: 0] += 1
    }

    /// Messages whose poll deadline passed are recorded as pending, with the last status seen.
    private func expireDeadlines() {
        lastDeadlineCheck = now
        let wall = Date()
        for item in pending.values where !busy.contains(item.messageId) && !(item.resumed && item.pollCount == 0) {
            guard let deadline = item.deadline, deadline <= wall else { continue }
            let update = FinalState.afterAcceptedRetry(
                rowRetryCount: item.baseRetryCount, postmanRetries: item.postmanRetries, lastStatus: item.lastStatus, newestError: nil,
                final: false)
            record(item, outcome: "retried", result: "pending", httpStatus: nil, code: nil, update: update)
        }
    }

    private func flush() async {
        defer { flushing = false }
        lastFlush = now
        let acceptedNow = accepted
        let settledNow = settled
        var callsNow = calls
        callsNow.timeline = timeline
        accepted = []
        settled = []
        calls = APICallCounts()
        timeline = timeline.emptied
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
            fail(error)
        }
    }

    private func fail(_ error: any Error) {
        if let lost = error as? LeaseLost {
            context.stop(.leaseLost(lost.description))
            logger.error("lease lost; stopping", metadata: ["error": "\(lost)"])
            return
        }
        let failure = JobError.classify(error)
        context.stop(.database(failure.message, transient: failure.status == .temporary))
        logger.error("database failure; stopping", metadata: ["error": "\(failure.message)"])
    }

    /// After the loop: record what is known; unsent intents go back to `selected`.
    private func finish() async {
        await flush()
        let unsentIds = unsent + ready.map(\.messageId)
        if !unsentIds.isEmpty {
            do {
                try await store.revertIntents(run: context.run.id, messageIds: unsentIds)
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
        stats.pendingAtStop = pending.count
    }
}

/// What a worker did, for progress lines and the run summary.
struct WorkerStats: Sendable {
    var accepted = 0
    var conflicts = 0
    var writeConflicts = 0
    var transientErrors = 0
    var leftForNextRun = 0
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
