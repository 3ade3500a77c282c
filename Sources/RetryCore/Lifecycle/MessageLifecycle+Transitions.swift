// What happens to a message: the events the worker feeds in, what the machine asks back, and the
// transition table; the rules it applies are in MessageLifecycle+Rules.swift.
extension MessageLifecycle {
    /// What Postman answered a retry call, as far as the lifecycle cares.
    public enum RetryAnswer: Sendable, Equatable {
        case accepted(latestStatus: String?)
        /// A 4xx other than 429 (401/403 included: the machine decides what stops the run).
        case refused(status: Int, code: String?, message: String?)
        case rateLimited
        /// Timeout, reset, 5xx, a body that is not the JSON expected: Postman may have acted.
        case lost
        /// Failed before any byte reached Postman (connection refused, DNS): certainly not acted on.
        case notSent
        /// The member's batch call was answered 201, or its answer was lost: each member is settled by
        /// reading it, as a retry whose answer was lost, and one with no new attempt yet is read again for a
        /// while (`Policy.batchSettleWindow`): Postman may retry the batch in the background.
        case attemptedAsBatch
        /// The batch call was refused with a 4xx that says no member was retried: each member is settled by
        /// reading it, at once.
        case refusedAsBatch
    }

    public enum Event: Sendable, Equatable {
        /// A list page (`fromPage`) or a single read showed the message.
        case viewed(PostmanView, fromPage: Bool, at: Double)
        /// A sweep of list pages ended without showing it.
        case absentFromList(at: Double)
        /// A single read answered 404.
        case readNotFound(code: String?, at: Double)
        /// A single read answered a 4xx other than 404 and 429.
        case readRefused(status: Int, code: String?, at: Double)
        /// The wave's transaction committed the intent (the row was as it was read).
        case intentCommitted
        /// The row changed in the table since it was read: recorded as `conflict` by that transaction.
        case intentConflict
        case callSent
        case callAnswered(RetryAnswer, at: Double)
        /// Another member's retry showed its batch is not retryable.
        case batchBlocked
        /// Time passed (deadlines).
        case tick(at: Double)
        /// The run stops, or quiet hours began: what has sent nothing is left for a later run.
        case release
    }

    /// What the worker must make durable or do, besides the next request (`need`).
    public enum Output: Sendable, Equatable {
        /// The retry was accepted (201 seen, or a lost answer settled as accepted): poll from now on.
        case accepted(at: Double, deadline: Double)
        case resolved(Resolution)
        /// The intent goes back to `selected` (nothing was sent, or the call was refused as a whole).
        case revertIntent
        /// Postman refused the key or the source IP: nothing more may be sent in this run.
        case stopRun(String)
        /// The message's batch is not retryable: no call for the other members either.
        case batchBlocked(String)
        /// A status the job does not know (named in the log and the report).
        case unknownStatus(String)
    }

    // MARK: - Transitions

    public mutating func handle(_ event: Event) -> [Output] {
        switch (phase, event) {
        case (.released, .intentCommitted):
            // The wave's transaction committed after the message was left for a later run.
            return [.revertIntent]
        case (.done, _), (.released, _): return []

        case (_, .release):
            guard hasSentNothing else { return [] }
            phase = .released
            return intentDurable ? [.revertIntent] : []

        case (.unread, .viewed(let view, let fromPage, _)), (.confirming, .viewed(let view, let fromPage, _)):
            return learnBeforeRetry(view, fromPage: fromPage)
        case (.unread, .absentFromList):
            phase = .confirming(refusals: 0)
            return []
        case (.unread, .readNotFound(let code, _)), (.confirming, .readNotFound(let code, _)):
            return resolve(.notFound, httpStatus: 404, code: code)
        case (.unread, .readRefused(let status, let code, _)), (.confirming(_), .readRefused(let status, let code, _)):
            if let stop = Self.credentialRefusal(status: status, code: code) { return [.stopRun(stop)] }
            var refusals = 1
            if case .confirming(let earlier) = phase { refusals += earlier }
            if refusals >= policy.maxReadRefusals {
                return resolve(.rejected, httpStatus: status, code: code, message: "Postman refused to show the message")
            }
            phase = .confirming(refusals: refusals)
            return []

        case (.ready(_), .intentConflict), (.intent(_), .intentConflict):
            // The transaction that found the row changed recorded the conflict itself.
            phase = .done(Resolution(outcome: .conflict))
            return []
        case (.ready(let witness), .intentCommitted):
            intentDurable = true
            // A new intent (a single retry after its batch's window): no longer waiting for a batch call.
            batchCallAt = nil
            phase = .intent(witness: witness)
            return []
        case (.ready(_), .batchBlocked), (.intent(_), .batchBlocked), (.unread, .batchBlocked), (.confirming(_), .batchBlocked):
            // An intent not sent is closed by the resolution itself.
            return resolve(.batchNotRetryable, code: "batch_not_found_or_is_not_retryable")

        case (.intent(let witness), .callSent):
            phase = .calling(witness: witness)
            return []
        case (.calling(let witness), .callAnswered(let answer, let at)):
            return answered(answer, witness: witness, at: at)

        case (.unsettled(let witness, _, _, _), .viewed(let view, let fromPage, let at)):
            return settle(view, witness: witness, fromPage: fromPage, at: at)
        case (.unsettled(let witness, _, let refusals, _), .readRefused(let status, let code, let at)):
            if let stop = Self.credentialRefusal(status: status, code: code) { return [.stopRun(stop)] }
            if refusals + 1 >= policy.maxReadRefusals {
                // Never a second call without knowing whether the first landed; the next run's first
                // look at Postman learns its count.
                return resolve(
                    .rejected, httpStatus: status, code: code,
                    message: "the retry's answer was lost and Postman refused to show the message; not retried again")
            }
            phase = .unsettled(
                witness: witness, readAfter: at + policy.settleDelay * Double(1 << min(refusals + 1, 6)), refusals: refusals + 1,
                singleOnly: true)
            return []
        case (.unsettled(_, _, _, _), .readNotFound(let code, _)):
            return resolve(.notFound, httpStatus: 404, code: code)
        case (.unsettled(let witness, let after, let refusals, _), .absentFromList):
            // A page did not show it: read it singly (still not before `after`).
            phase = .unsettled(witness: witness, readAfter: after, refusals: refusals, singleOnly: true)
            return []

        case (.reconciling(let witness, let mayHaveLanded, _), .viewed(let view, _, let at)):
            if mayHaveLanded, let attempts = view.attempts, attempts > witness {
                return acceptedAfterAll(view, witness: witness, at: at)
            }
            return resolve(
                .reconciled, update: reconciledUpdate(view), httpStatus: 400,
                code: "message_not_found_or_retry_message_not_in_failure_status", view: view)
        case (.reconciling(_, _, _), .readNotFound(let code, _)):
            return resolve(.notFound, httpStatus: 404, code: code)
        case (.reconciling(let witness, let mayHaveLanded, let refusals), .readRefused(let status, let code, _)):
            if let stop = Self.credentialRefusal(status: status, code: code) { return [.stopRun(stop)] }
            if refusals + 1 >= policy.maxReadRefusals {
                return resolve(.rejected, httpStatus: status, code: code, message: "Postman refused to show the message")
            }
            phase = .reconciling(witness: witness, ourCallMayHaveLanded: mayHaveLanded, refusals: refusals + 1)
            return []

        case (.awaiting(let a), .viewed(let view, let fromPage, let at)):
            return polled(a, view: view, fromPage: fromPage, at: at)
        case (.awaiting(var a), .absentFromList):
            a.wantSingle = true
            phase = .awaiting(a)
            return []
        case (.awaiting(var a), .readNotFound(_, let at)):
            // A retried message that Postman no longer shows: keep looking until its deadline.
            a.polls += 1
            a.mustLookOnce = false
            a.wantSingle = true
            a.nextPoll = at + policy.maxPollInterval
            phase = .awaiting(a)
            return []
        case (.awaiting(var a), .readRefused(let status, let code, let at)):
            if let stop = Self.credentialRefusal(status: status, code: code) { return [.stopRun(stop)] }
            a.refusals += 1
            a.mustLookOnce = false
            a.nextPoll = at + policy.maxPollInterval * Double(min(a.refusals, 4))
            phase = .awaiting(a)
            return []
        case (.awaiting(let a), .tick(let at)):
            guard at >= a.endsAt else { return [] }
            let update = FinalState.afterAcceptedRetry(
                rowRetryCount: row.baseRetryCount, postmanRetries: postmanRetries, lastStatus: lastStatus,
                newestError: nil, final: false)
            return resolve(.retried, result: .pending, update: update, acceptedAt: a.acceptedAt)

        default:
            // An event that does not apply in this phase (a late page item, a tick) changes nothing.
            return []
        }
    }
}
