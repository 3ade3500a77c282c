import PropertyBased
import RetryCore
import Testing

@Suite struct PacerTests {
    /// Whatever the call pattern, no window of one second holds more than the limit.
    @Test func neverMoreThanTheLimitInAnySecond() {
        var pacer = SlidingWindowPacer(limit: 10)
        var sent: [Double] = []
        var now = 0.0
        while sent.count < 200 {
            now = pacer.earliestSend(now: now + Double(sent.count % 3) * 0.001)
            let ticket = pacer.recordSend(at: now)
            pacer.recordAnswer(ticket: ticket, at: now + 0.002)
            sent.append(now)
        }
        for (i, t) in sent.enumerated() {
            let inWindow = sent[i...].prefix { $0 < t + 1.0 }.count
            #expect(inWindow <= 10)
        }
        // and the budget is used: 200 requests take about 20 s, not more than 5% over
        #expect(now < 19.0 * 1.05 + 1)
    }

    /// A request whose answer has not come back is assumed to arrive as late as `transitCap` after it was sent.
    @Test func unansweredRequestsHoldTheWindowOpen() {
        var pacer = SlidingWindowPacer(limit: 2, margin: 0, transitCap: 0.25, startInterval: 0)
        pacer.recordSend(at: 0)
        pacer.recordSend(at: 0.1)
        #expect(pacer.earliestSend(now: 0.2) == 1.25)
        var answered = SlidingWindowPacer(limit: 2, margin: 0, transitCap: 0.25, startInterval: 0)
        let first = answered.recordSend(at: 0)
        answered.recordSend(at: 0.1)
        answered.recordAnswer(ticket: first, at: 0.01)
        #expect(abs(answered.earliestSend(now: 0.2) - 1.01) < 1e-9)
    }

    /// A server that looks at a request late (a busy machine) stamps it late: the answer is the only
    /// bound on its arrival, however long after the send it comes, and an unanswered request may still
    /// arrive at any moment, until the client has given up on it.
    @Test func aLateAnswerAnchorsTheWindowAtTheAnswerAndAnUnansweredOneHoldsItUntilTheCap() {
        var late = SlidingWindowPacer(limit: 1, margin: 0, transitCap: 1, inFlightCap: 6)
        let ticket = late.recordSend(at: 0)
        #expect(late.earliestSend(now: 0.5) == 2.0, "unanswered: at least transitCap after the send")
        #expect(late.earliestSend(now: 3) == 4.0, "still unanswered at 3 s: it may arrive now")
        #expect(late.earliestSend(now: 9) == 9, "past the in-flight cap the client has given up on it")
        late.recordAnswer(ticket: ticket, at: 1.5)
        #expect(late.earliestSend(now: 1.6) == 2.5, "answered 1.5 s after the send: the window ends 1 s after the answer")
    }

    /// A campaign starts at 70% of its limit and is at the full limit 0.75 s later when nothing refuses it.
    @Test func aCampaignStartsBelowItsLimitAndClimbsQuicklyUntilItsFirst429() {
        var pacer = SlidingWindowPacer(limit: 10)
        #expect(pacer.currentLimit == 7)
        pacer.recordSend(at: 100)
        pacer.recordSend(at: 100.5)
        #expect(pacer.currentLimit == 9)
        pacer.recordSend(at: 100.75)
        #expect(pacer.currentLimit == 10)
        var refused = SlidingWindowPacer(limit: 10)
        refused.recordSend(at: 0)
        refused.recordSend(at: 0.25)
        refused.recordRateLimited(at: 0.3)  // 8 -> 4, ceiling 8: the slow climb from here
        #expect(refused.currentLimit == 4 && refused.ceiling == 8)
        refused.recordSend(at: 1.3)
        #expect(refused.currentLimit == 4)
        #expect(SlidingWindowPacer(limit: 2).currentLimit == 2)
    }

    @Test func a429HalvesTheRateAndItRecovers() {
        var pacer = SlidingWindowPacer(limit: 10, recoveryInterval: 1, probeFactor: 4, startInterval: 0)
        pacer.recordRateLimited(at: 5)
        #expect(pacer.currentLimit == 5)
        pacer.recordSend(at: 8)
        #expect(pacer.currentLimit == 8)
        // quickly up to one below the rate that met the 429, then one step per probe (4 intervals)
        pacer.recordSend(at: 20)
        #expect(pacer.currentLimit == 9)
        pacer.recordSend(at: 22)
        #expect(pacer.currentLimit == 9)
        pacer.recordSend(at: 24)
        #expect(pacer.currentLimit == 10)
    }

    /// Agency traffic that leaves the job 6 of 10 requests a second: the job settles just below the
    /// 429 and probes it every 4 intervals, rather than climbing into it again after every cut.
    @Test func underASteadyOutsideLoadTheRateSettlesBelowTheLimitThatMetA429() {
        var pacer = SlidingWindowPacer(limit: 10, recoveryInterval: 2, probeFactor: 4)
        var rateLimited = 0
        var t = 0.0
        while t < 120 {
            pacer.recordSend(at: t)
            if pacer.currentLimit > 6 {  // what the others leave
                pacer.recordRateLimited(at: t)
                rateLimited += 1
            }
            t += 0.1
        }
        // a climb of one every 2 s from each cut meets a 429 every 8 s (16 in these two minutes); probing
        // from just below it, every 14 s (10)
        #expect(rateLimited <= 10, "\(rateLimited) 429s in two minutes")
        #expect(pacer.currentLimit >= 3)
        // and once the others have gone, a probe that holds past the ceiling clears it: quick again
        var free = SlidingWindowPacer(limit: 10, recoveryInterval: 1, probeFactor: 4, startInterval: 0)
        free.recordRateLimited(at: 0)  // 10 -> 5, ceiling 10
        free.recordSend(at: 4)
        #expect(free.currentLimit == 9)
        free.recordSend(at: 8)
        #expect(free.currentLimit == 10 && free.ceiling == 10)
    }

    @Test func backoffGrowsAndIsCapped() {
        let backoff = Backoff(base: 0.25, cap: 20)
        #expect(backoff.delay(attempt: 1, unit: 1) <= 0.25)
        #expect(backoff.delay(attempt: 4, unit: 0) >= 1)
        #expect(backoff.delay(attempt: 30, unit: 1) <= 20)
    }
}

/// The sliding window against answers that come late, out of order, after a timeout, or never: whatever
/// the pattern, where each request really arrived (anywhere between its send and its answer) no second
/// holds more than the limit, and slow answers cost only their own slots.
@Suite struct PacerProperties {
    /// One request per script value: answered after a few milliseconds, after up to 2.4 s (out of order),
    /// after the client's 5 s timeout, or never (the client gave up without a word); it arrived at its
    /// send or as late as it could, by the value's parity. One answer in thirteen is a 429 (the rate is
    /// halved, then climbs back), and a send may come up to 0.15 s after its slot.
    static func simulate(limit: Int, script: [Int]) -> (arrivals: [Double], finished: Double) {
        var pacer = SlidingWindowPacer(limit: limit, inFlightCap: 6)
        var now = 0.0
        var pending: [(time: Double, ticket: Int, rateLimited: Bool)] = []
        var arrivals: [Double] = []
        for value in script {
            now += Double(value % 4) * 0.05
            // Wait for the window, taking the answers that come in meanwhile (they may open it sooner).
            while true {
                let slot = pacer.earliestSend(now: now)
                if let next = pending.indices.min(by: { pending[$0].time < pending[$1].time }), pending[next].time <= slot {
                    now = max(now, pending[next].time)
                    pacer.recordAnswer(ticket: pending[next].ticket, at: pending[next].time)
                    if pending[next].rateLimited { pacer.recordRateLimited(at: pending[next].time) }
                    pending.remove(at: next)
                    continue
                }
                if slot <= now { break }
                now = slot
            }
            let ticket = pacer.recordSend(at: now)
            let answer: Double? =
                switch value {
                case 0..<60: now + Double(value) * 0.001
                case 60..<85: now + Double(value - 60) * 0.1
                case 85..<95: now + 5
                default: nil
                }
            if let answer { pending.append((answer, ticket, value % 13 == 0)) }
            let latest = answer ?? now + 6
            arrivals.append(value % 2 == 0 ? now : latest)
        }
        return (arrivals.sorted(), now)
    }

    @Test func neverMoreThanTheLimitInAnySecondWhateverTheAnswersDo() async {
        await propertyCheck(count: 3_000, input: Gen.int(in: 1...12), Gen.int(in: 0...99).array(of: 1...300)) { limit, script in
            // Thousands of CPU-bound cases: give the cooperative threads back between them, or the test process's
            // other suites (a hold's heartbeat among them) starve for seconds on a two-core machine.
            await Task.yield()
            let arrivals = Self.simulate(limit: limit, script: script).arrivals
            for (i, t) in arrivals.enumerated() {
                let inWindow = arrivals[i...].prefix { $0 < t + 1.0 }.count
                #expect(inWindow <= limit, "\(inWindow) arrivals in the second from \(t), limit \(limit): \(script)")
            }
        }
    }

    /// Three of every ten requests answered only after the client's 5 s timeout: each holds its slot for
    /// 6 s, the others for about 1 s, so at most 10 / (0.3 * 6 + 0.7 * 1) = 4 requests a second can go (75 s
    /// for 300). Taking the slot `limit` places back in send order stopped all sending at each slow one:
    /// 174 s.
    @Test func slowAnswersCostOnlyTheirOwnSlots() {
        let script = (0..<300).map { $0 % 10 < 3 ? 90 : 2 }
        let finished = Self.simulate(limit: 10, script: script).finished
        #expect(finished < 80, "300 requests took \(finished) s")
    }
}
