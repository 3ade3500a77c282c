/// Internal state of one message, built from the data file and advanced by accepted retries.
struct MessageState: Sendable {
    struct HistoricAttempt: Sendable {
        var status: String
        var errorType: String?
        var errorCode: String?
        var createdAtMs: Int64
    }

    /// A retry the simulator accepted. Its status is computed from the clock when asked (no timers).
    struct AcceptedRetry: Sendable {
        var acceptedT: Double
        var acceptedMs: Int64
        var outcome: ScriptedOutcome.Kind
        /// Seconds (after time scale) from acceptance to the final status.
        var latency: Double
    }

    /// Current view of one attempt.
    struct AttemptView {
        var status: String
        var errorCode: String?
        var createdAtMs: Int64
        var updatedAtMs: Int64
    }

    let id: String
    let campaignId: String
    let batchId: String?
    let recipient: String
    let createdAtMs: Int64
    let baseStatus: String
    let baseUpdatedAtMs: Int64
    /// Attempts from the data, oldest first, padded so that `history.count == baseRetries + 1`.
    let history: [HistoricAttempt]
    let baseRetries: Int
    let outcomes: [ScriptedOutcome]?
    var accepted: [AcceptedRetry] = []

    var retriesUsed: Int { baseRetries + accepted.count }
    var isLocal: Bool { recipient.hasPrefix("65") }

    /// Where an accepted retry is at time `t`: the in-flight statuses are spread over its latency,
    /// `sent_to_telco` shows only for Singapore numbers (for others it is the terminal status).
    func view(of retry: AcceptedRetry, at t: Double, forceCreated: Bool) -> AttemptView {
        let progress = forceCreated ? 0 : (retry.latency > 0 ? (t - retry.acceptedT) / retry.latency : .infinity)
        var status = "created"
        var stageStart = 0.0
        var errorCode: String?
        func stage(_ at: Double, _ name: String) {
            if progress >= at {
                status = name
                stageStart = at
            }
        }
        stage(0.1, "enqueued")
        stage(0.25, "sending")
        stage(0.45, "sent")
        switch retry.outcome {
        case .success:
            if isLocal { stage(0.7, "sent_to_telco") }
            stage(1.0, isLocal ? "success" : "sent_to_telco")
        case .sentToTelco:
            if isLocal { stage(0.7, "sent_to_telco") }
            stage(1.0, "sent_to_telco")
        case .failure(let code):
            if progress >= 1.0 {
                status = "failure"
                stageStart = 1.0
                errorCode = code
            }
        case .stuck:
            break  // stays `sent` for ever
        }
        let latencyMs = retry.latency.isFinite ? retry.latency * 1000 : 0
        return AttemptView(
            status: status, errorCode: errorCode, createdAtMs: retry.acceptedMs,
            updatedAtMs: retry.acceptedMs + Int64(stageStart * latencyMs)
        )
    }

    func latestStatus(at t: Double) -> String {
        guard let last = accepted.last else { return baseStatus }
        return view(of: last, at: t, forceCreated: false).status
    }
}

struct BatchState: Sendable {
    let id: String
    let campaignId: String
    var status: String

    static let retryableStatuses: Set<String> = ["messages_enqueued", "messages_enqueuing_failed"]
    var isRetryable: Bool { Self.retryableStatuses.contains(status) }
}

/// Per-campaign sliding windows: `accepted` enforces the limit, `arrivals` measures the busiest second.
struct CampaignWindow: Sendable {
    let limit: Int
    var accepted = TimeWindow()
    var arrivals = TimeWindow()
    var maxArrivals = 0
    var backgroundRate: Double
    var nextBackgroundT: Double

    init(limit: Int, backgroundRate: Double, startT: Double) {
        self.limit = limit
        self.backgroundRate = backgroundRate
        self.nextBackgroundT = startT
    }

    /// Takes a slot in the window ending at `t` if one is free.
    mutating func admit(_ t: Double) -> Bool {
        accepted.drop(upTo: t - 1)
        guard accepted.count < limit else { return false }
        accepted.push(t)
        return true
    }

    /// Counts an arrival (accepted or refused) for `max_requests_in_1s`.
    mutating func recordArrival(_ t: Double) {
        arrivals.drop(upTo: t - 1)
        arrivals.push(t)
        maxArrivals = max(maxArrivals, arrivals.count)
    }

    /// Replays the synthetic background requests due up to `t` (only the last second can matter).
    mutating func catchUpBackground(to t: Double) {
        guard backgroundRate > 0 else { return }
        let step = 1 / backgroundRate
        if nextBackgroundT < t - 1 {
            nextBackgroundT += ((t - 1 - nextBackgroundT) / step).rounded(.down) * step
        }
        while nextBackgroundT <= t {
            _ = admit(nextBackgroundT)
            nextBackgroundT += step
        }
    }
}
