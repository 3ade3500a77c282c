import PropertyBased
import RetryCore
import Testing

/// One message on a model Postman: the rules of postman-v2-api.md section 1.3 (and the simulator's
/// answer to "what 3 counts": 3 retries, 4 attempts).
private struct ModelPostman {
    var exists = true
    var status = "failure"
    var attempts = 1
    var batchOpen = true
    var ourAccepted = 0
    var othersAccepted = 0

    var view: PostmanView {
        PostmanView(
            latestStatus: status, attempts: attempts, newestError: status == "failure" ? "routing_error" : nil,
            batchStatus: batchOpen ? "messages_enqueued" : "messages_processing")
    }

    /// A retry call reaching Postman: what it answers (nil: accepted).
    mutating func retry(byUs: Bool) -> (status: Int, code: String)? {
        guard exists, status == "failure" else { return (400, "message_not_found_or_retry_message_not_in_failure_status") }
        guard batchOpen else { return (400, "batch_not_found_or_is_not_retryable") }
        guard attempts < 4 else { return (400, "too_many_message_attempts_error") }
        attempts += 1
        status = "created"
        if byUs { ourAccepted += 1 } else { othersAccepted += 1 }
        return nil
    }
}

/// Drives one lifecycle through a script of choices: faults of every kind, crashes at every step (the
/// machine is rebuilt from what the journal holds, and what was not flushed is lost), Postman moving
/// on by itself. When the script runs out the world turns calm, so every message must end.
private struct Harness {
    var postman: ModelPostman
    let row: MessageLifecycle.Row
    let policy = MessageLifecycle.Policy(pollTimeout: 30, firstPollDelay: 1, maxPollInterval: 4, settleDelay: 2)
    var machine: MessageLifecycle
    var durable = MessageLifecycle.Durable.selected
    var outbox: [MessageLifecycle.Output] = []
    var recorded: MessageLifecycle.Resolution?
    var t = 1_000.0
    var calls = 0
    var witnesses: [Int] = []
    var script: [Int]
    var cursor = 0
    /// Other parties may retry the message while the run works it.
    let othersConcurrent: Bool
    let readRefusals: Bool

    init(postman: ModelPostman, row: MessageLifecycle.Row, script: [Int], othersConcurrent: Bool, readRefusals: Bool) {
        self.postman = postman
        self.row = row
        self.script = script
        self.othersConcurrent = othersConcurrent
        self.readRefusals = readRefusals
        machine = MessageLifecycle(row: row, policy: policy)
    }

    var calm: Bool { cursor >= script.count }
    mutating func next() -> Int {
        defer { cursor += 1 }
        return cursor < script.count ? script[cursor] : 50
    }

    mutating func feed(_ event: MessageLifecycle.Event) {
        outbox += machine.handle(event)
    }

    mutating func flush() {
        for output in outbox {
            switch output {
            case .accepted(let at, let deadline): durable = .accepted(acceptedAt: at, deadline: deadline, lastStatus: nil)
            case .resolved(let resolution):
                durable = .done
                recorded = resolution
            case .revertIntent: durable = .selected
            case .stopRun, .batchBlocked, .unknownStatus: break
            }
        }
        outbox = []
    }

    mutating func crash() {
        outbox = []
        if case .done = durable { return }
        machine = MessageLifecycle(restoring: durable, row: row, policy: policy, at: t)
    }

    /// Postman delivers what it had queued.
    mutating func deliver(_ choice: Int) {
        if postman.status == "created" { postman.status = choice % 3 == 0 ? "failure" : "success" }
    }

    mutating func run() {
        var steps = 0
        while steps < 5_000 {
            steps += 1
            t += 0.1
            feed(.tick(at: t))
            if case .done = durable, outbox.isEmpty { return }
            if machine.isOver {
                flush()
                return
            }
            let choice = next()
            if !calm {
                switch choice {
                case 0..<6:
                    crash()
                    continue
                case 6..<16:
                    flush()
                    continue
                case 16..<20:
                    if othersConcurrent { _ = postman.retry(byUs: false) }
                    continue
                case 20..<28:
                    deliver(choice)
                    continue
                default: break
                }
            } else {
                flush()
                deliver(1)
            }
            act(choice)
        }
        Issue.record("the lifecycle did not end within 5,000 steps: \(machine.phase)")
    }

    /// Does what the machine needs, with a fault drawn from the script.
    mutating func act(_ choice: Int) {
        let fault = calm ? 9 : choice % 10
        switch machine.need {
        case .view(let after, let singleOnly):
            if t < after { t = after }
            if fault == 0 { return }  // a 5xx or a timeout on a read: nothing learnt, try again
            let fromPage = !singleOnly && choice % 2 == 0
            if readRefusals && !calm && choice == 97 && !fromPage {
                feed(.readRefused(status: 400, code: "invalid_path", at: t))
                return
            }
            guard postman.exists else {
                feed(fromPage ? .absentFromList(at: t) : .readNotFound(code: "message_not_found", at: t))
                return
            }
            var view = postman.view
            if fromPage && choice % 7 == 0 { view.attempts = nil }  // a list item without its history
            feed(.viewed(view, fromPage: fromPage, at: t))
        case .intent(let witness):
            if !calm && choice == 98 {
                // The row changed in the table: the intent transaction records the conflict.
                durable = .done
                recorded = MessageLifecycle.Resolution(outcome: .conflict)
                feed(.intentConflict)
                return
            }
            durable = .intent(witness: witness)
            witnesses.append(witness)
            feed(.intentCommitted)
        case .retryCall:
            feed(.callSent)
            calls += 1
            switch fault {
            case 0: feed(.callAnswered(.notSent, at: t))
            case 1: feed(.callAnswered(.lost, at: t))  // lost before Postman acted
            case 2:
                _ = postman.retry(byUs: true)
                feed(.callAnswered(.lost, at: t))  // acted, then the answer was lost
            case 3: feed(.callAnswered(.rateLimited, at: t))
            case 4:
                _ = postman.retry(byUs: true)
                crash()  // killed with the call on the wire
            default:
                if let refusal = postman.retry(byUs: true) {
                    feed(.callAnswered(.refused(status: refusal.status, code: refusal.code, message: nil), at: t))
                } else {
                    feed(.callAnswered(.accepted(latestStatus: "created"), at: t))
                }
            }
        case .nothing:
            break
        }
    }
}

private let scripts = Gen.int(in: 0...99).array(of: 0...400)
private let starts = Gen.int(in: 0...11)

/// The starting states of the stale mix: table and Postman agree, the table lags, Postman already
/// shows the message final, at 3 retries, unknown, or in a blocked batch.
private func startingWorld(_ kind: Int) -> (ModelPostman, MessageLifecycle.Row) {
    var postman = ModelPostman()
    var row = MessageLifecycle.Row(retryCount: 0, batchId: "b1", recipient: "65****2222")
    switch kind {
    case 0, 1, 2, 3: break
    case 4:
        postman.attempts = 3  // the table says 1 retry, Postman 2
        row.retryCount = 1
        row.baseRetryCount = 1
    case 5: postman.attempts = 3
    case 6: postman.status = "success"
    case 7:
        postman.attempts = 4  // 3 retries used: exhausted
        row.retryCount = 1
        row.baseRetryCount = 1
    case 8: postman.exists = false
    case 9: postman.batchOpen = false
    case 10: postman.status = "sending"
    default:
        postman.attempts = 2
        row.retryCount = 2
        row.baseRetryCount = 2
    }
    return (postman, row)
}

@Suite struct MessageLifecycleProperties {
    /// Crashes at every step and faults of every kind, with nobody else touching the message.
    @Test func neverTwoRetriesNeverRetriedWithoutOneAndEveryMessageEnds() async {
        await propertyCheck(count: 3_000, input: starts, scripts) { kind, script in
            // Thousands of CPU-bound cases: give the cooperative threads back between them, or the test process's
            // other suites (a hold's heartbeat among them) starve for seconds on a two-core machine.
            await Task.yield()
            let (postman, row) = startingWorld(kind)
            var harness = Harness(postman: postman, row: row, script: script, othersConcurrent: false, readRefusals: false)
            let initial = harness.postman
            harness.run()
            let resolution = harness.recorded
            #expect(harness.postman.ourAccepted <= 1, "two accepted retries: \(script)")
            #expect(resolution != nil, "no outcome recorded, phase \(harness.machine.phase)")
            guard let resolution else { return }
            // retried exactly when our retry was accepted
            #expect(
                (resolution.outcome == .retried) == (harness.postman.ourAccepted == 1),
                "\(resolution) ours \(harness.postman.ourAccepted)")
            #expect((resolution.result != nil) == (resolution.outcome == .retried))
            if let count = resolution.update?.retryCount {
                #expect(count <= 3 && count >= row.retryCount)
                if resolution.outcome == .retried {
                    #expect(count == min(3, max(row.baseRetryCount + 1, harness.postman.attempts - 1)))
                }
            }
            // What Postman showed before the run settles the stale rows, without a retry call.
            if resolution.outcome != .conflict {
                switch true {
                case !initial.exists: #expect(resolution.outcome == .notFound && harness.calls == 0)
                case initial.status != "failure": #expect(resolution.outcome == .reconciled && harness.calls == 0)
                case initial.attempts >= 4: #expect(resolution.outcome == .exhausted && harness.calls == 0)
                case !initial.batchOpen: #expect(resolution.outcome == .batchNotRetryable && harness.calls == 0)
                default: break
                }
            }
            // Every witness is Postman's count, never the table's.
            for witness in harness.witnesses { #expect(witness >= initial.attempts) }
        }
    }

    /// Others retry the same message while the run works it, and reads are sometimes refused: still
    /// never two retries of ours, and `retried` only when Postman shows a new attempt.
    @Test func concurrentRetriesByOthersNeverMakeItRetryTwice() async {
        await propertyCheck(count: 2_000, input: starts, scripts) { kind, script in
            // Thousands of CPU-bound cases: give the cooperative threads back between them, or the test process's
            // other suites (a hold's heartbeat among them) starve for seconds on a two-core machine.
            await Task.yield()
            let (postman, row) = startingWorld(kind)
            var harness = Harness(postman: postman, row: row, script: script, othersConcurrent: true, readRefusals: true)
            let initial = harness.postman
            harness.run()
            #expect(harness.postman.ourAccepted <= 1)
            guard let resolution = harness.recorded else {
                Issue.record("no outcome recorded, phase \(harness.machine.phase)")
                return
            }
            if resolution.outcome == .retried { #expect(harness.postman.attempts > initial.attempts) }
            #expect(harness.postman.attempts <= 4)
        }
    }
}

@Suite struct MessageLifecycleExamples {
    let policy = MessageLifecycle.Policy(pollTimeout: 30, firstPollDelay: 1, maxPollInterval: 4)
    let row = MessageLifecycle.Row(retryCount: 1, recipient: "65****2222")

    /// A message Postman showed in `failure` with `attempts`, its intent committed and its call answered.
    func called(attempts: Int, answer: MessageLifecycle.RetryAnswer, at: Double = 1) -> (
        MessageLifecycle, [MessageLifecycle.Output]
    ) {
        var m = MessageLifecycle(row: row, policy: policy)
        _ = m.handle(.viewed(PostmanView(latestStatus: "failure", attempts: attempts), fromPage: true, at: 0))
        _ = m.handle(.intentCommitted)
        _ = m.handle(.callSent)
        let out = m.handle(.callAnswered(answer, at: at))
        return (m, out)
    }

    /// The outside run's case: the table says 1 retry, Postman 2; the answer is lost and Postman did not
    /// act. The old rule (table count + 1 = 2 < 3 attempts) took it as retried.
    @Test func aLaggingTableIsNotTakenAsARetry() {
        var m = MessageLifecycle(row: row, policy: policy)
        _ = m.handle(.viewed(PostmanView(latestStatus: "failure", attempts: 3), fromPage: true, at: 0))
        #expect(m.need == .intent(witness: 3))
        _ = m.handle(.intentCommitted)
        _ = m.handle(.callSent)
        _ = m.handle(.callAnswered(.lost, at: 1))
        #expect(m.need == .view(after: 3, singleOnly: false), "the settling read waits for Postman")
        let out = m.handle(.viewed(PostmanView(latestStatus: "failure", attempts: 3), fromPage: false, at: 3))
        #expect(out.isEmpty)
        #expect(m.need == .intent(witness: 3), "not retried: a fresh intent, then the call again")
    }

    /// Accepted, never read before the deadline: pending, with Postman's count from the witness (the row
    /// says 1 retry, Postman had 2 before ours, so 3 now), not the row's count + 1.
    @Test func aPendingRetryOnALaggingRowCarriesPostmansCount() {
        var (m, _) = called(attempts: 3, answer: .accepted(latestStatus: "created"), at: 1)
        let out = m.handle(.tick(at: 32))
        #expect(
            out == [
                .resolved(
                    MessageLifecycle.Resolution(
                        outcome: .retried, result: .pending,
                        update: RowUpdate(status: "created", retryCount: 3, errorCode: .some(nil)),
                        lastStatus: "created", postmanRetries: 3, acceptedAt: 1))
            ])
    }

    @Test func postmanStateBeforeAnyCallSettlesStaleRowsWithoutACall() {
        func outcome(_ view: PostmanView) -> MessageLifecycle.Outcome? {
            var m = MessageLifecycle(
                row: MessageLifecycle.Row(retryCount: 0, batchId: "b", recipient: "65****1111"), policy: policy)
            for output in m.handle(.viewed(view, fromPage: true, at: 0)) {
                if case .resolved(let r) = output { return r.outcome }
            }
            return nil
        }
        #expect(outcome(PostmanView(latestStatus: "success", attempts: 2)) == .reconciled)
        #expect(outcome(PostmanView(latestStatus: "failure", attempts: 4)) == .exhausted)
        #expect(
            outcome(PostmanView(latestStatus: "failure", attempts: 1, batchStatus: "messages_processing")) == .batchNotRetryable)
        #expect(outcome(PostmanView(latestStatus: "failure", attempts: 1, batchStatus: "messages_enqueuing_failed")) == nil)
        var absent = MessageLifecycle(row: row, policy: policy)
        _ = absent.handle(.absentFromList(at: 0))
        #expect(absent.need == .view(after: -.infinity, singleOnly: true), "absent from a page: one confirming read")
        let gone = absent.handle(.readNotFound(code: "message_not_found", at: 1))
        #expect(gone.contains { if case .resolved(let r) = $0 { r.outcome == .notFound } else { false } })
    }

    /// Restored as accepted after its deadline passed while the job was down: read once before the past
    /// deadline ends it, and still ends (it used to wait for a read forever when the read answered 404).
    @Test func aRestoredRetryThatNowReads404StillEnds() {
        var m = MessageLifecycle(
            restoring: .accepted(acceptedAt: 0, deadline: 30, lastStatus: "sending"), row: row, policy: policy, at: 100)
        #expect(m.need == .view(after: 100, singleOnly: false))
        #expect(m.handle(.tick(at: 100)).isEmpty, "not ended by its past deadline before it was looked at")
        _ = m.handle(.readNotFound(code: nil, at: 100))
        let out = m.handle(.tick(at: 100.1))
        #expect(out.contains { if case .resolved(let r) = $0 { r.outcome == .retried && r.result == .pending } else { false } })
    }

    /// CONTRACT.md section 4: a carried-over (or resumed) retry is polled until the deadline it was given
    /// (`--poll-timeout` from the run's start), not longer: it used to get at least 30 s, so a run with
    /// `--poll-timeout 3s` took 30 s and could write an outcome that came after its deadline.
    @Test func aRestoredRetryKeepsItsDeadline() {
        var m = MessageLifecycle(
            restoring: .accepted(acceptedAt: 0, deadline: 103, lastStatus: "sending"), row: row, policy: policy, at: 100)
        #expect(m.need == .view(after: 100, singleOnly: false))
        _ = m.handle(.viewed(PostmanView(latestStatus: "sending", attempts: 2), fromPage: false, at: 100.2))
        #expect(m.handle(.tick(at: 102.9)).isEmpty)
        let out = m.handle(.tick(at: 103))
        #expect(out.contains { if case .resolved(let r) = $0 { r.outcome == .retried && r.result == .pending } else { false } })
        // Seen once and past the deadline by then: a read that comes late does not keep it open.
        var late = MessageLifecycle(
            restoring: .accepted(acceptedAt: 0, deadline: 103, lastStatus: "sending"), row: row, policy: policy, at: 100)
        #expect(late.handle(.tick(at: 104)).isEmpty, "looked at once first")
        _ = late.handle(.viewed(PostmanView(latestStatus: "sending", attempts: 2), fromPage: true, at: 104.5))
        #expect(late.handle(.tick(at: 104.6)).contains { if case .resolved = $0 { true } else { false } })
        // Reads that keep failing (no event reaches the machine) do not keep it open for ever.
        var unread = MessageLifecycle(
            restoring: .accepted(acceptedAt: 0, deadline: 103, lastStatus: "sending"), row: row, policy: policy, at: 100)
        #expect(unread.handle(.tick(at: 129)).isEmpty)
        #expect(unread.handle(.tick(at: 130)).contains { if case .resolved = $0 { true } else { false } })
    }

    /// A single read that shows a final status without attempts settles; a page asks for one read.
    @Test func finalWithoutHistoryIsReadOnceNotPolledAtFullRate() {
        var (m, _) = called(attempts: 2, answer: .accepted(latestStatus: "created"), at: 1)
        _ = m.handle(.viewed(PostmanView(latestStatus: "success", attempts: nil), fromPage: true, at: 3))
        #expect(m.need == .view(after: 3, singleOnly: true))
        let out = m.handle(.viewed(PostmanView(latestStatus: "success", attempts: nil), fromPage: false, at: 3.1))
        #expect(out.contains { if case .resolved(let r) = $0 { r.outcome == .retried && r.result == .succeeded } else { false } })
    }

    /// A whole-batch call answered 201 (or lost): Postman may retry the batch in the background, so a member
    /// that shows no new attempt yet is read again for `batchSettleWindow` rather than given a single retry
    /// (or taken for blocked by the batch's status meanwhile); one that ended otherwise is settled at once.
    /// A 4xx that says no member was retried is settled at once.
    @Test func aBatchMemberWithNoNewAttemptYetIsReadAgainWhileTheBatchMayBeAtWork() {
        let failed = PostmanView(latestStatus: "failure", attempts: 2, batchStatus: "messages_enqueuing")
        var (m, _) = called(attempts: 2, answer: .attemptedAsBatch, at: 1)
        #expect(m.need == .view(after: 3, singleOnly: false))
        #expect(m.handle(.viewed(failed, fromPage: true, at: 3)).isEmpty, "not blocked by the batch at work")
        #expect(m.need == .view(after: 5, singleOnly: false), "read again")
        let landed = m.handle(.viewed(PostmanView(latestStatus: "created", attempts: 3), fromPage: true, at: 5))
        #expect(landed.contains { if case .accepted = $0 { true } else { false } })

        var late = called(attempts: 2, answer: .attemptedAsBatch, at: 1).0
        _ = late.handle(.viewed(PostmanView(latestStatus: "failure", attempts: 2), fromPage: true, at: 60.9))
        #expect(late.need == .view(after: 62.9, singleOnly: false))
        _ = late.handle(.viewed(PostmanView(latestStatus: "failure", attempts: 2), fromPage: true, at: 61))
        #expect(late.need == .intent(witness: 2), "the window over: a single retry, after a fresh intent")

        var succeeded = called(attempts: 2, answer: .attemptedAsBatch, at: 1).0
        let out = succeeded.handle(.viewed(PostmanView(latestStatus: "success", attempts: 2), fromPage: false, at: 3))
        #expect(out.contains { if case .resolved(let r) = $0 { r.outcome == .reconciled } else { false } })

        var refused = called(attempts: 2, answer: .refusedAsBatch, at: 1).0
        _ = refused.handle(.viewed(PostmanView(latestStatus: "failure", attempts: 2), fromPage: true, at: 3))
        #expect(refused.need == .intent(witness: 2), "no member was retried: singles at once")
    }

    /// The window's reads back off (2, 4, 8, 16 s); past it, a batch that still shows itself at work is
    /// waited for up to the poll deadline; a member that lands is accepted as of the call's answer; a member
    /// restored after a restart keeps its batch call's time.
    @Test func aBatchMemberWaitsForItsBatchAtWorkAndIsAcceptedAsOfTheCall() {
        let atWork = PostmanView(latestStatus: "failure", attempts: 2, batchStatus: "messages_enqueuing")
        var long = policy
        long.pollTimeout = 300
        var m = MessageLifecycle(row: row, policy: long)
        _ = m.handle(.viewed(PostmanView(latestStatus: "failure", attempts: 2), fromPage: true, at: 0))
        _ = m.handle(.intentCommitted)
        _ = m.handle(.callSent)
        _ = m.handle(.callAnswered(.attemptedAsBatch, at: 1))
        var reads: [Double] = []
        var t = 3.0
        for _ in 0..<5 {
            _ = m.handle(.viewed(atWork, fromPage: true, at: t))
            guard case .view(let after, _) = m.need else { break }
            reads.append(after - t)
            t = after
        }
        #expect(reads == [2, 4, 8, 16, 16])
        _ = m.handle(.viewed(atWork, fromPage: true, at: 100))
        #expect(m.need == .view(after: 116, singleOnly: false), "past the window, the batch at work is waited for")
        let out = m.handle(.viewed(PostmanView(latestStatus: "sending", attempts: 3), fromPage: true, at: 116))
        #expect(out.first == .accepted(at: 1, deadline: 301), "accepted as of the call: \(out)")

        // Up to the poll deadline only (30 s here, so the 60 s window alone bounds it).
        var stuck = called(attempts: 2, answer: .attemptedAsBatch, at: 1).0
        #expect(stuck.handle(.viewed(atWork, fromPage: true, at: 60.9)).isEmpty)
        let late = stuck.handle(.viewed(atWork, fromPage: true, at: 61))
        #expect(late.contains { if case .resolved(let r) = $0 { r.outcome == .batchNotRetryable } else { false } })

        var restored = MessageLifecycle(
            restoring: .intent(witness: 2, intentAt: 100, batchCalledAt: 101), row: row, policy: policy, at: 104)
        _ = restored.handle(.viewed(PostmanView(latestStatus: "failure", attempts: 2), fromPage: true, at: 107))
        #expect(restored.need == .view(after: 109, singleOnly: false), "a restored member waits for its batch too")

        // Past the window it goes by a single retry: that intent is its own, no longer the batch call's.
        var single = called(attempts: 2, answer: .attemptedAsBatch, at: 1).0
        _ = single.handle(.viewed(PostmanView(latestStatus: "failure", attempts: 2), fromPage: true, at: 61))
        #expect(single.need == .intent(witness: 2))
        _ = single.handle(.intentCommitted)
        _ = single.handle(.callSent)
        _ = single.handle(.callAnswered(.lost, at: 70))
        let landed = single.handle(.viewed(PostmanView(latestStatus: "sending", attempts: 3), fromPage: true, at: 72))
        #expect(landed.first == .accepted(at: 72, deadline: 72 + policy.pollTimeout), "accepted as of its own read: \(landed)")
    }

    /// Left for a later run after a lost answer that did not land: its intent is in the journal and goes
    /// back; a wave that commits after the release is reverted too.
    @Test func releasingADurableIntentRevertsIt() {
        var (m, _) = called(attempts: 2, answer: .lost, at: 1)
        _ = m.handle(.viewed(PostmanView(latestStatus: "failure", attempts: 2), fromPage: false, at: 4))
        #expect(m.need == .intent(witness: 2))
        #expect(m.handle(.release) == [.revertIntent])
        var late = MessageLifecycle(row: row, policy: policy)
        _ = late.handle(.viewed(PostmanView(latestStatus: "failure", attempts: 2), fromPage: true, at: 0))
        #expect(late.handle(.release).isEmpty, "nothing in the journal yet")
        #expect(late.handle(.intentCommitted) == [.revertIntent])
    }

    /// After a restart or a lease takeover, an intent is read only once a call made for it cannot still be
    /// on the wire; an intent without a witness (older than V005) is never called again.
    @Test func restoredIntentsWaitForTheirCallAndNeedAWitness() {
        let restored = MessageLifecycle(restoring: .intent(witness: 2, intentAt: 100), row: row, policy: policy, at: 101)
        #expect(restored.need == .view(after: 107, singleOnly: false))
        var legacy = MessageLifecycle(restoring: .intent(witness: nil), row: row, policy: policy, at: 101)
        let out = legacy.handle(.viewed(PostmanView(latestStatus: "failure", attempts: 2), fromPage: false, at: 102))
        #expect(out.contains { if case .resolved(let r) = $0 { r.outcome == .reconciled } else { false } })
    }

    @Test func refusalCodesStopTheRunWhateverTheStatus() {
        var (m, out) = called(attempts: 2, answer: .refused(status: 400, code: "invalid_ip_address_used", message: nil), at: 1)
        #expect(out.contains(.revertIntent))
        #expect(out.contains { if case .stopRun = $0 { true } else { false } })
    }

    /// Another 4xx on a poll no longer drops the message: it is polled again and ends at its deadline.
    @Test func aRefusedPollKeepsTheMessageUntilItsDeadline() {
        var (m, _) = called(attempts: 2, answer: .accepted(latestStatus: nil), at: 0)
        _ = m.handle(.readRefused(status: 400, code: "invalid_path", at: 2))
        guard case .view(let after, _) = m.need else {
            Issue.record("no poll planned")
            return
        }
        #expect(after > 2)
        let out = m.handle(.tick(at: 31))
        #expect(out.contains { if case .resolved(let r) = $0 { r.result == .pending } else { false } })
    }
}
