import Synchronization

/// A Postman request as the core sees it, stripped of transport.
struct SimRequest: Sendable {
    var method: String
    /// Path as received, percent-encoded, without the query string.
    var rawPath: String
    var query: String?
    var authorization: String?
}

/// What to send back, and how (faults that need the transport are carried out by the server layer).
struct SimResponse: Sendable {
    enum Delivery: Sendable, Equatable {
        case normal
        /// Close the connection without answering.
        case drop
        /// Cut the body short (malformed JSON).
        case truncated
    }

    var status: Int
    var body: String?
    var headers: [(String, String)] = []
    var delivery: Delivery = .normal
    /// Hold the answer back this long (slow-response fault).
    var delaySeconds: Double = 0
}

/// All simulator state behind one lock. Every request is handled in a single short critical section,
/// O(1) apart from list pages; nothing here blocks or awaits.
final class SimulatorCore: Sendable {
    private let clockStart = ContinuousClock.now
    private let wallStartMs = SimTime.nowMillis()
    private let state: Mutex<State>

    init(data: SimulatorData, options: SimulatorOptions) throws {
        try data.validate()
        let weighted = try Self.weightedOutcomes(options.outcomeWeights)
        guard options.timeScale > 0, options.timeScale.isFinite else { throw SimulatorDataError("time scale must be > 0") }
        guard options.latencyMin >= 0, options.latencyMax >= options.latencyMin else {
            throw SimulatorDataError("latency range must satisfy 0 <= min <= max")
        }
        guard options.defaultRateLimit >= 1 else { throw SimulatorDataError("rate limit must be at least 1") }
        state = Mutex(State(options: options, weightedOutcomes: weighted, data: data, nowT: 0))
    }

    /// Seconds since start, monotonic: used for rate windows, delivery progress and ledger times.
    func nowT() -> Double {
        let d = ContinuousClock.now - clockStart
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    func wallMillis(at t: Double) -> Int64 {
        wallStartMs + Int64(t * 1000)
    }

    func load(_ data: SimulatorData) throws {
        try data.validate()
        let t = nowT()
        state.withLock { $0.reload(data: data, nowT: t) }
    }

    func reset() {
        let t = nowT()
        state.withLock { $0.reload(data: $0.data, nowT: t) }
    }

    func ledger() -> SimulatorLedger {
        let t = nowT()
        return state.withLock { s in
            s.applyDueBatchRetries(t: t)
            return SimulatorLedger(
                requests: s.requests,
                acceptedRetries: s.acceptedRetries,
                rateLimited: s.rateLimited,
                maxRequestsIn1s: s.windows.compactMapValues { $0.maxArrivals > 0 ? $0.maxArrivals : nil }
            )
        }
    }

    func handle(_ request: SimRequest) -> SimResponse {
        state.withLock { s in
            // Read the clock under the lock so arrival times are in the order requests are handled
            // (the sliding windows rely on increasing times).
            let t = nowT()
            return s.handle(request, t: t, nowMs: wallMillis(at: t))
        }
    }

    static func weightedOutcomes(_ weights: [String: Double]) throws -> [(ScriptedOutcome, Double)] {
        var list: [(ScriptedOutcome, Double)] = []
        var total = 0.0
        for key in weights.keys.sorted() {  // sorted: the draw must not depend on dictionary order
            let w = weights[key]!
            guard let outcome = ScriptedOutcome(key), w >= 0, w.isFinite else {
                throw SimulatorDataError("bad outcome weight \(key)=\(w)")
            }
            guard w > 0 else { continue }
            total += w
            list.append((outcome, total))
        }
        guard total > 0 else { throw SimulatorDataError("outcome weights must not all be zero") }
        return list.map { ($0.0, $0.1 / total) }
    }
}
