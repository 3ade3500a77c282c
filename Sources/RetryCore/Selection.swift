/// Why a failed row in scope was not selected (CONTRACT.md section 3), in the order the rules apply.
public enum SkipReason: String, Sendable, CaseIterable, Codable {
    case otp
    case retryLimit = "retry_limit"
    case permanentError = "permanent_error"
    case unknownErrorCode = "unknown_error_code"
    case malformed
}

/// Which delivery error codes are worth a retry. Codes compare exactly; NULL is retryable, an empty
/// string is an unknown code.
public struct ErrorPolicy: Sendable, Equatable {
    public var permanent: Set<String>
    public var retryable: Set<String>
    /// What a code in neither list does: by default the row is skipped as `unknown_error_code`
    /// (CONTRACT.md section 3); an agency may choose to retry such codes instead.
    public var retryUnknown: Bool

    /// CONTRACT.md section 3, read from `ErrorCatalog`: the delivery codes not worth retrying are
    /// permanent (`recipient_invalid`, `content_invalid`), those worth it or maybe worth it are retryable.
    public static let `default` = ErrorPolicy(
        permanent: Set(ErrorCatalog.deliveryErrors.filter { $0.worthRetrying == .no }.map(\.code)),
        retryable: Set(ErrorCatalog.deliveryErrors.filter { $0.worthRetrying == .yes || $0.worthRetrying == .maybe }.map(\.code)))

    public init(permanent: Set<String>, retryable: Set<String>, retryUnknown: Bool = false) {
        self.permanent = permanent
        self.retryable = retryable
        self.retryUnknown = retryUnknown
    }

    public enum Verdict: Sendable, Equatable { case retryable, permanent, unknown }

    public func classify(_ code: String?) -> Verdict {
        guard let code else { return .retryable }
        if permanent.contains(code) { return .permanent }
        if retryable.contains(code) { return .retryable }
        return retryUnknown ? .retryable : .unknown
    }
}

/// A value the selection read but cannot use as it stands: a NULL key (the row cannot be named or
/// paged past), or bytes that are not UTF-8 (possible in a `SQL_ASCII` database). The row is `malformed`.
public struct FieldProblem: Sendable, Equatable {
    public var field: String
    public var problem: String
    public init(field: String, problem: String) {
        self.field = field
        self.problem = problem
    }
}

/// A failed row of the agency table as the selection reads it. Values the table may hold in odd
/// shapes (NULLs, negative counts) are kept as read, so the rules can name them.
public struct CandidateRow: Sendable, Equatable {
    public var key: String
    public var messageId: String?
    public var campaignId: String?
    public var batchId: String?
    public var recipient: String?
    public var isOtp: Bool?
    public var status: String
    public var retryCount: Int?
    public var errorCode: String?
    /// Timestamps as PostgreSQL printed them: passed back verbatim for compare-and-set.
    public var createdAt: String
    public var updatedAt: String?
    /// The first value that could not be read as it is in the table (see `FieldProblem`).
    public var unreadable: FieldProblem?

    public init(
        key: String, messageId: String?, campaignId: String?, batchId: String?, recipient: String?, isOtp: Bool?,
        status: String, retryCount: Int?, errorCode: String?, createdAt: String, updatedAt: String?,
        unreadable: FieldProblem? = nil
    ) {
        self.key = key
        self.messageId = messageId
        self.campaignId = campaignId
        self.batchId = batchId
        self.recipient = recipient
        self.isOtp = isOtp
        self.status = status
        self.retryCount = retryCount
        self.errorCode = errorCode
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.unreadable = unreadable
    }
}

public enum SelectionVerdict: Sendable, Equatable {
    case selected
    /// `field` names the column at fault for `malformed`.
    case skipped(SkipReason, field: String? = nil, problem: String? = nil)
}

/// The selection rules of CONTRACT.md section 3, as a pure function.
public struct SelectionRules: Sendable {
    public var otpCampaigns: Set<String>
    public var errorPolicy: ErrorPolicy
    public static let retryLimit = 3
    /// The longest message, campaign or batch id the job takes, in UTF-8 bytes. Postman's ids are
    /// short; a longer one is garbage, and it could not be journaled (PostgreSQL refuses a btree
    /// index entry over 2,704 bytes, and the journal is keyed by message id) nor sent in a URL that
    /// every server accepts (percent-encoding can triple it).
    public static let maxIdBytes = 1000

    public init(otpCampaigns: Set<String> = [], errorPolicy: ErrorPolicy = .default) {
        self.otpCampaigns = otpCampaigns
        self.errorPolicy = errorPolicy
    }

    /// Only rows whose status is exactly `failure` are looked at; callers filter on that first.
    public func classify(_ row: CandidateRow) -> SelectionVerdict {
        if row.isOtp == true || (row.campaignId.map { otpCampaigns.contains($0) } ?? false) {
            return .skipped(.otp)
        }
        if let count = row.retryCount, count >= Self.retryLimit { return .skipped(.retryLimit) }
        switch errorPolicy.classify(row.errorCode) {
        case .permanent: return .skipped(.permanentError)
        case .unknown: return .skipped(.unknownErrorCode)
        case .retryable: break
        }
        if let problem = Self.malformation(row) {
            return .skipped(.malformed, field: problem.field, problem: problem.problem)
        }
        return .selected
    }

    /// The first unusable value of a row, if any.
    public static func malformation(_ row: CandidateRow) -> (field: String, problem: String)? {
        if let unreadable = row.unreadable { return (unreadable.field, unreadable.problem) }
        for (field, value) in [("message_id", row.messageId), ("campaign_id", row.campaignId)] {
            guard let value else { return (field, "is NULL") }
            if value.isEmpty { return (field, "is empty") }
            if value == "." || value == ".." { return (field, "is '\(value)', which cannot be one URL path segment") }
        }
        // A batch id goes into paths too (`/batch/{id}/…`); an empty one is no batch.
        if let batch = row.batchId, batch == "." || batch == ".." {
            return ("batch_id", "is '\(batch)', which cannot be one URL path segment")
        }
        for (field, value) in [("message_id", row.messageId), ("campaign_id", row.campaignId), ("batch_id", row.batchId)] {
            if let value, value.utf8.count > maxIdBytes {
                return (field, "is \(value.utf8.count) bytes long; ids of more than \(maxIdBytes) bytes are not taken")
            }
        }
        guard let count = row.retryCount else { return ("retry_count", "is NULL") }
        if count < 0 { return ("retry_count", "is negative (\(count))") }
        if row.isOtp == nil { return ("is_otp", "is NULL, so the job cannot tell whether it is an OTP") }
        return nil
    }
}
