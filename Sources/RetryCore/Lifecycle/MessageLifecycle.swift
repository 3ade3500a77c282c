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
    public let row: Row
    public let policy: Policy
    // Set inside RetryCore, not only here: the transitions and rules in the `MessageLifecycle+*.swift`
    // extensions change these, and an extension in another file sees only internal members.
    public internal(set) var phase: Phase
    var lastStatus: String?
    var postmanRetries: Int?
    /// A call of ours in this run lost its answer (or a restart found an intent): it may land late.
    var hadLostAnswer = false
    /// When its batch's whole call was answered (or lost): Postman may still be retrying the batch.
    var batchCallAt: Double?
    /// Reads since then that showed no new attempt yet (they back off).
    var batchRereads = 0
    /// The journal holds an intent for it (so leaving it for a later run must revert that intent).
    var intentDurable = false

    public init(row: Row, policy: Policy) {
        self.row = row
        self.policy = policy
        phase = .unread
    }

    /// What the journal holds of a message: the only state that survives a crash.
    public enum Durable: Sendable, Equatable {
        case selected
        /// `witness` nil: an intent recorded before witnesses came from Postman (V005); `intentAt`: when it
        /// was committed; `batchCalledAt`: when this run's whole call of its batch, which this intent was
        /// for, was answered 201 or lost (or sent, before a restart that found no answer recorded).
        case intent(witness: Int?, intentAt: Double? = nil, batchCalledAt: Double? = nil)
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
        case .intent(let witness?, let intentAt, let batchCalledAt):
            hadLostAnswer = true
            intentDurable = true
            batchCallAt = batchCalledAt
            // Its call may still be on the wire (a killed process's, or a worker's that lost its lease).
            let readAfter = max(now, (intentAt ?? now) + policy.callTimeout + policy.settleDelay)
            phase = .unsettled(witness: witness, readAfter: readAfter, refusals: 0, singleOnly: false)
        case .intent(nil, _, _):
            // No witness from Postman (an intent older than V005): never called again; the row follows
            // what Postman shows.
            intentDurable = true
            phase = .reconciling(witness: Int.max, ourCallMayHaveLanded: false, refusals: 0)
        case .accepted(let acceptedAt, let deadline, let status, let witness):
            lastStatus = status
            if let witness { postmanRetries = witness }
            phase = .awaiting(
                Awaiting(
                    acceptedAt: acceptedAt, deadline: deadline, nextPoll: now, mustLookOnce: true,
                    lookWindowEnds: now + policy.restoredLookWindow))
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

    /// The next request this message needs.
    public enum Need: Sendable, Equatable {
        /// A view of the message, from a list page or a single read (`singleOnly`), not before `after`.
        case view(after: Double, singleOnly: Bool)
        /// An intent with this witness, committed with the row check in the next wave.
        case intent(witness: Int)
        case retryCall
        case nothing
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
}
