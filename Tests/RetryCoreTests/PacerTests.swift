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
