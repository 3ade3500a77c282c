// The data of a message's lifecycle: what was read of the row, the tunables, the phases and how a
// message ends (the machine itself is in MessageLifecycle.swift).
extension MessageLifecycle {
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
        /// After a whole-batch call's answer (or its loss), how long a member that shows no new attempt yet
        /// and has not ended otherwise is read again instead of settled: Postman documents its batch retry
        /// as behaving like Batch Send, which enqueues in the background, and its 201 as "attempted".
        public var batchSettleWindow: Double = 60
        /// Reads answered with a 4xx (not 404, 429, 401/403) before the machine gives up on a message.
        public var maxReadRefusals = 4
        /// How long a restored retry whose deadline passed waits for its one look when reads keep failing.
        public var restoredLookWindow: Double = 30
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
        /// Restored after a restart (or carried over from an earlier run): looked at once before its
        /// deadline may end it, so an outcome reached while the job was down, or a deadline that passed
        /// meanwhile, still gets one read. The deadline itself stays the contract's (section 4).
        public var mustLookOnce = false
        /// Reads that keep failing (5xx, timeouts: no event reaches the machine) do not keep it open past this.
        public var lookWindowEnds = Double.infinity

        /// When time alone may end it as pending: its deadline, or, while it waits for its one look, the
        /// later of that and the end of its window for one.
        public var endsAt: Double { mustLookOnce ? max(deadline, lookWindowEnds) : deadline }
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
