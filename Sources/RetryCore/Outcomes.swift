import Foundation

/// What write-back sets on an agency row (nil = the column stays as it is).
public struct RowUpdate: Sendable, Equatable {
    public var status: String?
    public var retryCount: Int?
    public var errorCode: String??

    public init(status: String?, retryCount: Int?, errorCode: String??) {
        self.status = status
        self.retryCount = retryCount
        self.errorCode = errorCode
    }
}

/// The final-state rules of CONTRACT.md section 4, as pure functions.
public enum FinalState {
    /// A retry the job made was accepted. `final` is whether `lastStatus` is final.
    /// `retry_count` = max(row's count + 1, Postman's count), at most 3; the newest error only when final.
    public static func afterAcceptedRetry(
        rowRetryCount: Int, postmanRetries: Int?, lastStatus: String?, newestError: String?, final: Bool
    ) -> RowUpdate {
        let count = min(3, max(rowRetryCount + 1, postmanRetries ?? 0))
        return RowUpdate(
            status: lastStatus ?? "created", retryCount: count, errorCode: .some(final ? newestError : nil))
    }

    /// The retry was refused because the message was not in `failure`: the row follows Postman.
    public static func reconciled(
        rowRetryCount: Int, postmanRetries: Int?, latestStatus: String, newestError: String?
    ) -> RowUpdate {
        let count = min(3, max(rowRetryCount, postmanRetries ?? 0))
        return RowUpdate(status: latestStatus, retryCount: count, errorCode: .some(newestError))
    }

    /// Postman said `too_many_message_attempts_error`: only the count changes.
    public static let exhausted = RowUpdate(status: nil, retryCount: 3, errorCode: nil)
}

/// How a retry whose answer was lost is settled from the message read back. Its attempt history is
/// the witness: one more attempt than before means it was accepted, and so does an attempt created
/// after the intent was recorded (allowing for clock skew), which also covers a table whose count was
/// wrong. A status that changed without a new attempt was not our retry.
public enum RetrySettlement: Sendable, Equatable {
    case accepted
    case notAccepted

    /// Clock skew allowed between this machine and Postman when comparing attempt times.
    public static let clockSkew: Double = 120

    public static func settle(
        attemptsBefore: Int, attemptsNow: Int?, latestStatus: String, newestAttemptAt: Date? = nil,
        intentAt: Date? = nil
    ) -> RetrySettlement {
        if let attemptsNow, attemptsNow > attemptsBefore { return .accepted }
        if let newestAttemptAt, let intentAt, newestAttemptAt.timeIntervalSince(intentAt) > -clockSkew {
            return .accepted
        }
        // Without an attempt history, a message no longer in `failure` may have been retried by us.
        if attemptsNow == nil && latestStatus != "failure" { return .accepted }
        return .notAccepted
    }
}
