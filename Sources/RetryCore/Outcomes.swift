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
        let count = min(SelectionRules.retryLimit, max(rowRetryCount + 1, postmanRetries ?? 0))
        return RowUpdate(
            status: lastStatus ?? "created", retryCount: count, errorCode: .some(final ? newestError : nil))
    }

    /// The retry was refused because the message was not in `failure`: the row follows Postman.
    public static func reconciled(
        rowRetryCount: Int, postmanRetries: Int?, latestStatus: String, newestError: String?
    ) -> RowUpdate {
        let count = min(SelectionRules.retryLimit, max(rowRetryCount, postmanRetries ?? 0))
        return RowUpdate(status: latestStatus, retryCount: count, errorCode: .some(newestError))
    }

    /// Postman said `too_many_message_attempts_error`: only the count changes.
    public static let exhausted = RowUpdate(status: nil, retryCount: SelectionRules.retryLimit, errorCode: nil)
}
