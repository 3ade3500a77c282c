/// The whole life of one selected message in a run, as a pure state machine: CONTRACT.md section 4
/// lives here and nowhere else. It does no I/O and has no clock: the campaign worker feeds it what
/// Postman and the journal said (events, each with the time it happened, in seconds on any clock
/// that both sides share, e.g. Unix time) and carries out what it asks for (`need`, outputs).
///
/// The rule that makes a lost answer safe: before a retry call the machine knows Postman's attempt
/// count (from a list page or a read), and that count goes into the intent. A retry whose answer was
/// lost was accepted exactly when Postman later shows more attempts than that witness; the agency
/// table's `retry_count` is never the witness, since it may lag (someone else retried).
public struct MessageLifecycle: Sendable, Equatable {
    /// What the job read from the agency row.
    public struct Row: Sendable, Equatable {
        /// `retry_count` as read at selection.
        public var retryCount: Int
        /// The row's `retry_count` before this job's retry (equals `retryCount` unless a write-back happened).
        public var baseRetryCount: Int
        public var batchId: String?
        /// Masked is enough: only the country prefix matters (`sent_to_telco` is final abroad).
        public var recipient: String

        public init(retryCount: Int, baseRetryCount: Int? = nil, batchId: String? = nil, recipient: String) {
            self.retryCount = retryCount
            self.baseRetryCount = baseRetryCount ?? retryCount
            self.batchId = batchId
            self.recipient = recipient
        }
    }

    /// Tunables of the lifecycle; times in seconds.
    public struct Policy: Sendable, Equatable {
        /// A retry's poll deadline after it was accepted (`--poll-timeout`).
        public var pollTimeout: Double
        public var firstPollDelay: Double
        public var maxPollInterval: Double
        /// How long after a lost answer the settling read is made: Postman may still be working on the
        /// call, and a read that comes too early would show no new attempt and invite a second call.
        public var settleDelay: Double = 2
        /// Reads answered with a 4xx (not 404, 429, 401/403) before the machine gives up on a message.
        public var maxReadRefusals = 4
        /// A message restored as accepted is polled for at least this long, so an outcome reached while
        /// the job was down is read once even when its deadline passed meanwhile.
        public var restoredReadWindow: Double = 30
        /// The longest a retry call can be on the wire (the request timeout): an intent found after a
        /// restart or a lease takeover is read only once a call made for it can no longer be in flight.
        public var callTimeout: Double

        public init(
            pollTimeout: Double, firstPollDelay: Double, maxPollInterval: Double, settleDelay: Double = 2, callTimeout: Double = 5
        ) {
            self.pollTimeout = pollTimeout
            self.firstPollDelay = firstPollDelay
            self.maxPollInterval = maxPollInterval
            self.settleDelay = settleDelay
            self.callTimeout = callTimeout
        }
    }

    public struct Awaiting: Sendable, Equatable {
        public var acceptedAt: Double
        public var deadline: Double
        public var nextPoll: Double
        public var polls = 0
        /// A page showed it final but without its attempt history, or did not show it: read it singly.
        public var wantSingle = false
        public var refusals = 0
    }

    public enum Phase: Sendable, Equatable {
        /// Selected; Postman's state not known yet. A list page or a read tells.
        case unread
        /// A page did not show it, or showed it without an attempt history: one single read settles it.
        case confirming(refusals: Int)
        /// Postman shows it in `failure` with `witness` attempts and retries left: an intent is due.
        case ready(witness: Int)
        /// The intent (with the witness) is durable; the retry call may go out.
        case intent(witness: Int)
        /// The retry call is on the wire.
        case calling(witness: Int)
        /// The call's answer was lost: read the message (not before `readAfter`) before anything else.
        case unsettled(witness: Int, readAfter: Double, refusals: Int, singleOnly: Bool)
        /// Postman answered the call `message_not_found_or_retry_message_not_in_failure_status`: read it.
        /// `ourCallMayHaveLanded`: an earlier call for it lost its answer, so a new attempt may be ours.
        case reconciling(witness: Int, ourCallMayHaveLanded: Bool, refusals: Int)
        /// Retry accepted; polled until final or its deadline.
        case awaiting(Awaiting)
        case done(Resolution)
        /// Left for a later run with nothing sent (stop, quiet hours): its journal entry goes back to
        /// `selected` (or leaves the run).
        case released
    }

    public enum Outcome: String, Sendable, CaseIterable {
        case retried, exhausted, reconciled, conflict, rejected
        case notFound = "not_found"
        case batchNotRetryable = "batch_not_retryable"
    }

    public enum RetryResult: String, Sendable, CaseIterable {
        case succeeded, failed, pending
    }

    /// How the message ended in this run: what is recorded and written back.
    public struct Resolution: Sendable, Equatable {
        public var outcome: Outcome
        public var result: RetryResult?
        /// What write-back sets on the agency row (nil: the row is not written).
        public var update: RowUpdate?
        public var httpStatus: Int?
        public var postmanCode: String?
        public var postmanMessage: String?
        public var lastStatus: String?
        public var postmanRetries: Int?
        public var newestError: String?
        public var acceptedAt: Double?

        public init(
            outcome: Outcome, result: RetryResult? = nil, update: RowUpdate? = nil, httpStatus: Int? = nil,
            postmanCode: String? = nil, postmanMessage: String? = nil, lastStatus: String? = nil,
            postmanRetries: Int? = nil, newestError: String? = nil, acceptedAt: Double? = nil
        ) {
            self.outcome = outcome
            self.result = result
            self.update = update
            self.httpStatus = httpStatus
            self.postmanCode = postmanCode
            self.postmanMessage = postmanMessage
            self.lastStatus = lastStatus
            self.postmanRetries = postmanRetries
            self.newestError = newestError
            self.acceptedAt = acceptedAt
        }
    }

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
        /// The member's batch was retried whole (201, or a 400 that says no member was retried): each
        /// member is settled by reading it, exactly as a retry whose answer was lost.
        case attemptedAsBatch
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

    /// The next request this message needs.
    public enum Need: Sendable, Equatable {
        /// A view of the message, from a list page or a single read (`singleOnly`), not before `after`.
        case view(after: Double, singleOnly: Bool)
        /// An intent with this witness, committed with the row check in the next wave.
        case intent(witness: Int)
        case retryCall
        case nothing
    }

    public let row: Row
    public let policy: Policy
    public private(set) var phase: Phase
    private var lastStatus: String?
    private var postmanRetries: Int?
    /// A call of ours in this run lost its answer (or a restart found an intent): it may land late.
    private var hadLostAnswer = false
    /// The journal holds an intent for it (so leaving it for a later run must revert that intent).
    private var intentDurable = false

    public init(row: Row, policy: Policy) {
        self.row = row
        self.policy = policy
        phase = .unread
    }

    /// What the journal holds of a message: the only state that survives a crash.
    public enum Durable: Sendable, Equatable {
        case selected
        /// `witness` nil: an intent recorded before witnesses came from Postman (V005); `intentAt`: when it
        /// was committed.
        case intent(witness: Int?, intentAt: Double? = nil)
        /// `witness`: Postman's attempt count before the accepted call, when the journal has it.
        case accepted(acceptedAt: Double, deadline: Double, lastStatus: String?, witness: Int? = nil)
        case done
    }

    /// The machine of a message after a restart, from its journal entry. An intent may or may not have
    /// been sent, so it is settled by a read first; an accepted retry is polled again.
    public init(restoring durable: Durable, row: Row, policy: Policy, at now: Double) {
        self.init(row: row, policy: policy)
        switch durable {
        case .selected: phase = .unread
        case .intent(let witness?, let intentAt):
            hadLostAnswer = true
            intentDurable = true
            // Its call may still be on the wire (a killed process's, or a worker's that lost its lease).
            let readAfter = max(now, (intentAt ?? now) + policy.callTimeout + policy.settleDelay)
            phase = .unsettled(witness: witness, readAfter: readAfter, refusals: 0, singleOnly: false)
        case .intent(nil, _):
            // No witness from Postman (an intent older than V005): never called again; the row follows
            // what Postman shows.
            intentDurable = true
            phase = .reconciling(witness: Int.max, ourCallMayHaveLanded: false, refusals: 0)
        case .accepted(let acceptedAt, let deadline, let status, let witness):
            lastStatus = status
            if let witness { postmanRetries = witness }
            phase = .awaiting(
                Awaiting(acceptedAt: acceptedAt, deadline: max(deadline, now + policy.restoredReadWindow), nextPoll: now))
        case .done: phase = .released
        }
    }

    public var isOver: Bool {
        switch phase {
        case .done, .released: return true
        default: return false
        }
    }

    /// Nothing sent and nothing learnt that must be recorded: may be left for a later run.
    public var hasSentNothing: Bool {
        switch phase {
        case .unread, .confirming, .ready, .intent: return true
        default: return false
        }
    }

    public var need: Need {
        switch phase {
        case .unread: return .view(after: -.infinity, singleOnly: false)
        case .confirming: return .view(after: -.infinity, singleOnly: true)
        case .ready(let witness): return .intent(witness: witness)
        case .intent: return .retryCall
        case .unsettled(_, let after, _, let single): return .view(after: after, singleOnly: single)
        case .reconciling: return .view(after: -.infinity, singleOnly: true)
        case .awaiting(let a): return .view(after: a.nextPoll, singleOnly: a.wantSingle)
        case .calling, .done, .released: return .nothing
        }
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
            a.wantSingle = true
            a.nextPoll = at + policy.maxPollInterval
            phase = .awaiting(a)
            return []
        case (.awaiting(var a), .readRefused(let status, let code, let at)):
            if let stop = Self.credentialRefusal(status: status, code: code) { return [.stopRun(stop)] }
            a.refusals += 1
            a.nextPoll = at + policy.maxPollInterval * Double(min(a.refusals, 4))
            phase = .awaiting(a)
            return []
        case (.awaiting(let a), .tick(let at)):
            guard at >= a.deadline else { return [] }
            let update = FinalState.afterAcceptedRetry(
                rowRetryCount: row.baseRetryCount, postmanRetries: postmanRetries, lastStatus: lastStatus,
                newestError: nil, final: false)
            return resolve(.retried, result: .pending, update: update, acceptedAt: a.acceptedAt)

        default:
            // An event that does not apply in this phase (a late page item, a tick) changes nothing.
            return []
        }
    }

    // MARK: - Rules

    /// Refusal codes that mean the key or the source IP was refused, whatever the HTTP status.
    public static let credentialRefusalCodes: Set<String> = [
        "invalid_api_key_provided", "invalid_ip_address_error", "invalid_ip_address_used", "authentication_required",
    ]

    public static func credentialRefusal(status: Int, code: String?) -> String? {
        if status == 401 || status == 403 || (code.map(credentialRefusalCodes.contains) ?? false) {
            return "HTTP \(status)\(code.map { " \($0)" } ?? "")"
        }
        return nil
    }

    public static let retryableBatchStatuses: Set<String> = ["messages_enqueued", "messages_enqueuing_failed"]

    /// Postman's state before any call: what it already shows final, exhausted or blocked is settled
    /// without a retry call; a message in `failure` with retries left gets an intent with its count.
    private mutating func learnBeforeRetry(_ view: PostmanView, fromPage: Bool) -> [Output] {
        var outputs = note(view)
        if view.latestStatus != "failure" {
            outputs += resolve(.reconciled, update: reconciledUpdate(view), view: view)
            return outputs
        }
        guard let attempts = view.attempts else {
            if fromPage {
                phase = .confirming(refusals: 0)
                return outputs
            }
            return outputs + resolve(
                .rejected, message: "Postman showed no attempt history, so a lost answer could not be settled; not retried",
                view: view)
        }
        if attempts - 1 >= SelectionRules.retryLimit {
            return outputs + resolve(.exhausted, update: FinalState.exhausted, code: "too_many_message_attempts_error", view: view)
        }
        if let status = view.batchStatus, !Self.retryableBatchStatuses.contains(status) {
            if let batch = row.batchId { outputs.append(.batchBlocked(batch)) }
            return outputs + resolve(.batchNotRetryable, code: "batch_not_found_or_is_not_retryable", view: view)
        }
        phase = .ready(witness: attempts)
        return outputs
    }

    private mutating func answered(_ answer: RetryAnswer, witness: Int, at: Double) -> [Output] {
        switch answer {
        case .accepted(let status):
            lastStatus = status ?? "created"
            return accept(at: at, witness: witness)
        case .rateLimited, .notSent:
            // Dropped, not queued, by Postman (or never sent): the same intent goes out again.
            phase = .intent(witness: witness)
            return []
        case .lost, .attemptedAsBatch:
            hadLostAnswer = true
            phase = .unsettled(witness: witness, readAfter: at + policy.settleDelay, refusals: 0, singleOnly: false)
            return []
        case .refused(let status, let code, let message):
            if let stop = Self.credentialRefusal(status: status, code: code) {
                // The refused call is not a retry; nothing more is sent, the intent goes back.
                phase = .released
                return [.revertIntent, .stopRun(stop)]
            }
            switch code {
            case "message_not_found_or_retry_message_not_in_failure_status":
                // A call of ours whose answer was lost may have landed late and made this one fail.
                phase = .reconciling(witness: witness, ourCallMayHaveLanded: hadLostAnswer, refusals: 0)
                return []
            case "too_many_message_attempts_error":
                return resolve(.exhausted, update: FinalState.exhausted, httpStatus: status, code: code)
            case "batch_not_found_or_is_not_retryable":
                return (row.batchId.map { [.batchBlocked($0)] } ?? [])
                    + resolve(.batchNotRetryable, httpStatus: status, code: code)
            default:
                return resolve(.rejected, httpStatus: status, code: code, message: message.map { String($0.prefix(500)) })
            }
        }
    }

    /// A read after a lost answer: more attempts than the witness means the call landed.
    private mutating func settle(_ view: PostmanView, witness: Int, fromPage: Bool, at: Double) -> [Output] {
        guard let attempts = view.attempts else {
            if fromPage {
                phase = .unsettled(witness: witness, readAfter: at, refusals: 0, singleOnly: true)
                return note(view)
            }
            // No witness to compare: never a second call; the row follows what Postman shows.
            return note(view) + resolve(.reconciled, update: reconciledUpdate(view), view: view)
        }
        if attempts > witness { return acceptedAfterAll(view, witness: witness, at: at) }
        // The call did not land. The row follows Postman if it is no longer in `failure`; else a new
        // intent with Postman's count now (committed with a fresh row check) before the call goes again.
        return learnBeforeRetry(view, fromPage: fromPage)
    }

    private mutating func acceptedAfterAll(_ view: PostmanView, witness: Int, at: Double) -> [Output] {
        let outputs = accept(at: at, witness: witness)
        guard case .awaiting(let a) = phase else { return outputs }
        return outputs + polled(a, view: view, fromPage: false, at: at)
    }

    /// Postman had `witness` attempts before the call, so it now counts at least `witness` retries:
    /// a pending message whose polls never showed the history still gets the larger count.
    private mutating func accept(at: Double, witness: Int) -> [Output] {
        postmanRetries = max(postmanRetries ?? 0, witness)
        intentDurable = false
        let deadline = at + policy.pollTimeout
        phase = .awaiting(Awaiting(acceptedAt: at, deadline: deadline, nextPoll: at + policy.firstPollDelay))
        return [.accepted(at: at, deadline: deadline)]
    }

    private mutating func polled(_ awaiting: Awaiting, view: PostmanView, fromPage: Bool, at: Double) -> [Output] {
        var a = awaiting
        let outputs = note(view)
        let status = view.latestStatus
        if PostmanStatus.isFinal(status, recipient: row.recipient) {
            if view.attempts == nil && fromPage {
                // A list item without its attempt history: one single read for the count and the error.
                a.wantSingle = true
                a.nextPoll = at
                phase = .awaiting(a)
                return outputs
            }
            // Postman's count only grows: the largest seen (or known from the witness) stands.
            let update = FinalState.afterAcceptedRetry(
                rowRetryCount: row.baseRetryCount, postmanRetries: postmanRetries, lastStatus: status,
                newestError: view.newestError, final: true)
            return outputs + resolve(
                .retried, result: PostmanStatus.isSuccess(status) ? .succeeded : .failed, update: update, view: view,
                acceptedAt: a.acceptedAt)
        }
        a.polls += 1
        a.wantSingle = false
        a.nextPoll = at + min(policy.maxPollInterval, policy.firstPollDelay * Double(1 << min(a.polls - 1, 10)))
        phase = .awaiting(a)
        return outputs
    }

    private mutating func note(_ view: PostmanView) -> [Output] {
        lastStatus = view.latestStatus
        if let retries = view.retries { postmanRetries = max(postmanRetries ?? 0, retries) }
        return PostmanStatus.isKnown(view.latestStatus) ? [] : [.unknownStatus(view.latestStatus)]
    }

    /// The row follows Postman; without an attempt history the count and the error stay as they are.
    private func reconciledUpdate(_ view: PostmanView) -> RowUpdate {
        guard view.attempts != nil else { return RowUpdate(status: view.latestStatus, retryCount: nil, errorCode: nil) }
        return FinalState.reconciled(
            rowRetryCount: row.retryCount, postmanRetries: view.retries, latestStatus: view.latestStatus,
            newestError: view.newestError)
    }

    private mutating func resolve(
        _ outcome: Outcome, result: RetryResult? = nil, update: RowUpdate? = nil, httpStatus: Int? = nil,
        code: String? = nil, message: String? = nil, view: PostmanView? = nil, acceptedAt: Double? = nil
    ) -> [Output] {
        intentDurable = false
        let resolution = Resolution(
            outcome: outcome, result: result, update: update, httpStatus: httpStatus, postmanCode: code,
            postmanMessage: message, lastStatus: view?.latestStatus ?? lastStatus,
            postmanRetries: [view?.retries, postmanRetries].compactMap { $0 }.max(), newestError: view?.newestError,
            acceptedAt: acceptedAt)
        phase = .done(resolution)
        return [.resolved(resolution)]
    }
}

/// What Postman showed of one message, from a list page or a single read.
public struct PostmanView: Sendable, Equatable {
    public var latestStatus: String
    /// nil: no attempt history was shown.
    public var attempts: Int?
    /// The error code of the newest attempt, nil unless it failed.
    public var newestError: String?
    /// The status of the message's own batch, when shown.
    public var batchStatus: String?

    public init(latestStatus: String, attempts: Int?, newestError: String? = nil, batchStatus: String? = nil) {
        self.latestStatus = latestStatus
        self.attempts = attempts
        self.newestError = newestError
        self.batchStatus = batchStatus
    }

    /// Postman's retries: every attempt after the first.
    public var retries: Int? { attempts.map { max(0, $0 - 1) } }
}
