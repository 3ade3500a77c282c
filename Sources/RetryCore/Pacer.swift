/// Paces one campaign's requests so that no 1-second window ever holds more than the limit, which is
/// how Postman (and the simulator) count: at most N requests in any sliding second, every endpoint
/// together.
///
/// What counts is when a request *arrives*, and that lies somewhere between our send and its
/// response: the HTTP client may hold a request back (busy connections, a stalled event loop) and
/// then release several at once, and a busy server may take a while to look at it. So each request
/// is anchored at its response time (the response head: callers pass it), however late that is; a
/// new request goes out only when fewer than `limit` earlier ones were anchored less than `window`
/// (1 s + `margin`) ago or are unanswered. No request arrives before it is sent, nor after its answer:
/// in any window of one second, the request sent last found every other one of that window still
/// counting when it was checked, so Postman never sees more than `limit` in a second. (An earlier rule anchored a request
/// at send + 1 s when its answer was later: on a saturated machine a server that stamped arrivals
/// more than a second late then saw 11 in a second.) A request still unanswered holds its slot until
/// it is answered, or until `inFlightCap` after it was sent (the client has given up on it by then).
/// On loopback this costs little; with a 100 ms round trip it costs about 10% of the budget, a price
/// worth paying to never see a 429 of our own making.
///
/// The slots are counted, not taken in send order: whichever window of one second the request sent last
/// arrives in, the others in it arrived no earlier than a second before its send, so each was counted.
/// Taking the request `limit` places back in send order instead let one slow answer stop the campaign: with 30% of answers held back 15 s (a request
/// timeout of 5 s), each held request stopped all sending for 6 s, though the other nine slots were free
/// (106 requests in a minute where 600 were allowed).
///
/// After a 429 (someone else, e.g. the agency's live traffic, is using part of the budget) the
/// allowed rate is halved and then recovers by one request per second for every `recoveryInterval`
/// without a 429, up to one below the rate that met the 429 (the `ceiling`: what the others leave us
/// is just below it). From there it probes slowly, one step every `probeFactor` intervals, so a steady
/// outside load costs one 429 per probe rather than one per climb; a probe that holds past the ceiling
/// (the other traffic has gone) clears it, and the climb is quick again.
///
/// A campaign starts at 70% of its limit and climbs one step every `startInterval` until its first 429
/// or the limit (three quarters of a second at 10 requests/s): when the agency's own traffic already
/// uses part of the budget, the first second costs one or two 429s instead of a burst of them, for
/// about a sixth of a second of the budget. (Starting at half the limit cost a hundred 60-message
/// campaigns a fifth of their budget.)
public struct SlidingWindowPacer: Sendable {
    public let limit: Int
    public let window: Double
    public let transitCap: Double
    /// Longer than any request may take (the request timeout and a margin).
    public let inFlightCap: Double
    public let recoveryInterval: Double
    public let probeFactor: Double
    public let startInterval: Double
    /// The limit in force now (lowered after 429s).
    public private(set) var currentLimit: Double
    /// Send and (once known) response times of the latest requests, oldest first.
    private var entries: [(ticket: Int, sent: Double, answered: Double?)] = []
    private var nextTicket = 0
    private var lastCut: Double?
    private var lastRecovery: Double = 0
    /// The limit in force when the last 429 came, until a probe holds above it.
    public private(set) var ceiling: Double?
    /// Still climbing to the limit from the start, no 429 yet.
    private var starting = true
    private var firstSend: Double?

    public init(
        limit: Int, margin: Double = 0.003, transitCap: Double = 1.0, inFlightCap: Double = 31, recoveryInterval: Double = 2,
        probeFactor: Double = 4, startInterval: Double = 0.25
    ) {
        precondition(limit > 0, "a rate limit must be positive")
        self.limit = limit
        self.window = 1 + margin
        self.transitCap = transitCap
        self.inFlightCap = max(inFlightCap, transitCap)
        self.recoveryInterval = recoveryInterval
        self.probeFactor = max(1, probeFactor)
        self.startInterval = startInterval
        self.currentLimit = startInterval > 0 ? max(1, (Double(limit) * 0.7).rounded(.up)) : Double(limit)
    }

    /// The earliest time, not before `now`, at which one more request may be sent.
    public func earliestSend(now: Double) -> Double {
        let allowed = max(1, Int(currentLimit.rounded(.down)))
        guard entries.count >= allowed else { return now }
        return withUnsafeTemporaryAllocation(of: Double.self, capacity: entries.count) { ends in
            // When each earlier request stops counting: a window after the latest it can arrive.
            var counting = 0
            for entry in entries {
                // Unanswered: it may arrive any moment from now on (at least `transitCap` after its send).
                let latestArrival = entry.answered ?? min(max(now, entry.sent + transitCap), entry.sent + inFlightCap)
                let end = latestArrival + window
                if end > now {
                    ends[counting] = end
                    counting += 1
                }
            }
            guard counting >= allowed else { return now }
            // Free once all but `allowed - 1` of them have stopped counting.
            var counted = UnsafeMutableBufferPointer(rebasing: ends[0..<counting])
            counted.sort()
            return counted[counting - allowed]
        }
    }

    /// Records a request sent at `time` (monotonic seconds); pass the ticket to `recordAnswer`.
    @discardableResult
    public mutating func recordSend(at time: Double) -> Int {
        nextTicket += 1
        if firstSend == nil {
            firstSend = time
            if lastCut == nil { lastRecovery = time }
        }
        // Requests that can no longer arrive within a window of this one are done with.
        entries.removeAll { ($0.answered ?? $0.sent + inFlightCap) + window <= time }
        entries.append((nextTicket, time, nil))
        recover(now: time)
        return nextTicket
    }

    /// The response (or failure) of a request came back at `time`.
    public mutating func recordAnswer(ticket: Int, at time: Double) {
        guard let index = entries.lastIndex(where: { $0.ticket == ticket }) else { return }
        entries[index].answered = time
    }

    /// A 429 arrived: halve the rate (not below one request per second), at most once per window.
    public mutating func recordRateLimited(at time: Double) {
        if let lastCut, time - lastCut < window { return }
        starting = false
        ceiling = currentLimit
        currentLimit = max(1, (currentLimit / 2).rounded(.down))
        lastCut = time
        lastRecovery = time
    }

    private mutating func recover(now: Double) {
        guard currentLimit < Double(limit) else {
            starting = false
            return
        }
        if starting {
            let steps = ((now - lastRecovery) / startInterval).rounded(.down)
            guard steps >= 1 else { return }
            currentLimit = min(Double(limit), currentLimit + steps)
            lastRecovery = now
            return
        }
        if let ceiling, currentLimit > ceiling { self.ceiling = nil }
        if let ceiling, currentLimit >= ceiling - 1 {
            // Probing the rate that met the last 429.
            guard now - lastRecovery >= recoveryInterval * probeFactor else { return }
            currentLimit = min(Double(limit), currentLimit + 1)
        } else {
            let steps = ((now - lastRecovery) / recoveryInterval).rounded(.down)
            guard steps >= 1 else { return }
            currentLimit = min(Double(limit), currentLimit + steps, ceiling.map { max(currentLimit, $0 - 1) } ?? .infinity)
        }
        lastRecovery = now
    }
}

/// Exponential backoff with full jitter, for 5xx, timeouts and dropped connections.
public struct Backoff: Sendable {
    public var base: Double
    public var cap: Double
    public init(base: Double = 0.25, cap: Double = 20) {
        self.base = base
        self.cap = cap
    }

    /// The delay before attempt `attempt` (1-based), with `unit` a random number in [0, 1).
    public func delay(attempt: Int, unit: Double) -> Double {
        let ceiling = min(cap, base * Double(1 << min(max(attempt - 1, 0), 20)))
        return ceiling / 2 + ceiling / 2 * unit
    }
}
