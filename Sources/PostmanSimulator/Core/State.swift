// The simulator's state and how it is loaded; how it answers a request is in the extensions under
// Router/, Middleware/ and Endpoints/.
struct State: Sendable {
    var options: SimulatorOptions
    let weightedOutcomes: [(ScriptedOutcome, Double)]
    /// The data last loaded, for `/_sim/reset`.
    var data: SimulatorData
    var apiKeys: [String: String] = [:]
    var rateLimits: [String: Int] = [:]
    var messages: [String: MessageState] = [:]
    var batches: [String: BatchState] = [:]
    /// Message ids per campaign / batch, sorted by (createdAt, id): the list endpoints' order.
    var campaignOrder: [String: [String]] = [:]
    var batchOrder: [String: [String]] = [:]
    var windows: [String: CampaignWindow] = [:]
    var requests: [SimulatorLedger.Request] = []
    var acceptedRetries: [String: Int] = [:]
    var rateLimited = 0
    var faultRNG: SplitMix64
    var errorCounter: UInt64 = 0
    var loadedAtT: Double = 0
    /// Whole-batch retries answered but not yet in effect (`SimulatorOptions.batchRetryDelay`).
    var batchRetriesDue: [PendingBatchRetry] = []

    struct PendingBatchRetry: Sendable {
        let batchId: String
        let dueT: Double
        let dueMs: Int64
        let messageIds: [String]
    }

    init(options: SimulatorOptions, weightedOutcomes: [(ScriptedOutcome, Double)], data: SimulatorData, nowT: Double) {
        self.options = options
        self.weightedOutcomes = weightedOutcomes
        self.data = data
        self.faultRNG = SplitMix64(seed: options.seed ^ 0xFA17_5EED)
        reload(data: data, nowT: nowT)
    }

    /// Default creation time for messages that give none: deterministic, so same data => same cursors.
    static let defaultBaseMs: Int64 = SimTime.parseMillis("2026-11-21T08:00:00+08:00")!

    mutating func reload(data: SimulatorData, nowT: Double) {
        self.data = data
        apiKeys = Dictionary(data.campaigns.map { ($0.id, $0.apiKey) }, uniquingKeysWith: { a, _ in a })
        rateLimits = Dictionary(
            data.campaigns.compactMap { c in c.rateLimit.map { (c.id, $0) } }, uniquingKeysWith: { a, _ in a })
        batches = Dictionary(
            data.batches.map { ($0.id, BatchState(id: $0.id, campaignId: $0.campaignId, status: $0.status)) },
            uniquingKeysWith: { a, _ in a })
        messages = [:]
        messages.reserveCapacity(data.messages.count)
        for (index, m) in data.messages.enumerated() {
            messages[m.id] = Self.buildMessage(m, index: index)
        }
        let sorted = messages.values.sorted { ($0.createdAtMs, $0.id) < ($1.createdAtMs, $1.id) }
        campaignOrder = [:]
        batchOrder = [:]
        for m in sorted {
            campaignOrder[m.campaignId, default: []].append(m.id)
            if let b = m.batchId { batchOrder[b, default: []].append(m.id) }
        }
        windows = [:]
        requests = []
        acceptedRetries = [:]
        rateLimited = 0
        faultRNG = SplitMix64(seed: options.seed ^ 0xFA17_5EED)
        errorCounter = 0
        loadedAtT = nowT
        batchRetriesDue = []
    }

    static func buildMessage(_ m: SimulatorData.Message, index: Int) -> MessageState {
        let explicitCreated = m.createdAt.flatMap(SimTime.parseMillis)
        let explicitAttemptTimes = m.attempts.compactMap { $0.createdAt.flatMap(SimTime.parseMillis) }
        let anchor = explicitCreated ?? explicitAttemptTimes.min() ?? (defaultBaseMs + Int64(index) * 1000)
        var history = m.attempts.enumerated().map { k, a in
            MessageState.HistoricAttempt(
                status: a.status,
                errorType: a.errorType ?? a.errorCode.map(errorType(forCode:)),
                errorCode: a.errorCode,
                createdAtMs: a.createdAt.flatMap(SimTime.parseMillis) ?? anchor + Int64(k) * 60_000
            )
        }
        if history.isEmpty {
            // Postman always has at least one attempt; mirror the data's status.
            history = [.init(status: m.latestStatus, createdAtMs: anchor)]
        }
        history.sort { $0.createdAtMs < $1.createdAtMs }
        // Keep Postman's count (attempts - 1) equal to `retries`: pad with older failed attempts.
        let retries = max(m.retries, history.count - 1)
        while history.count < retries + 1 {
            let oldest = history[0]
            history.insert(
                .init(
                    status: "failure", errorType: oldest.errorType, errorCode: oldest.errorCode,
                    createdAtMs: oldest.createdAtMs - 60_000),
                at: 0
            )
        }
        return MessageState(
            id: m.id, campaignId: m.campaignId, batchId: m.batchId, recipient: m.recipient,
            createdAtMs: explicitCreated ?? min(anchor, history[0].createdAtMs),
            baseStatus: m.latestStatus,
            baseUpdatedAtMs: history.map(\.createdAtMs).max()!,
            history: history, baseRetries: retries,
            outcomes: m.outcomes?.compactMap(ScriptedOutcome.init)
        )
    }
}
