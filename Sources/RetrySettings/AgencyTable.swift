import LibPQ

/// Where the agency keeps its messages: the table and the column for each thing the job reads or
/// writes. The default is the reference table of CONTRACT.md section 2. Names reach SQL only as
/// quoted identifiers.
public struct AgencyTable: Sendable, Codable, Equatable {
    public var schema: String?
    public var table: String
    public var key: String
    public var messageId: String
    public var campaignId: String
    public var batchId: String?
    public var recipient: String
    public var isOtp: String?
    public var status: String
    public var retryCount: String
    public var errorCode: String
    public var createdAt: String
    public var updatedAt: String

    public static let reference = AgencyTable(
        schema: nil, table: "outbound_messages", key: "id", messageId: "message_id", campaignId: "campaign_id",
        batchId: "batch_id", recipient: "recipient", isOtp: "is_otp", status: "status", retryCount: "retry_count",
        errorCode: "error_code", createdAt: "created_at", updatedAt: "updated_at")

    public init(
        schema: String?, table: String, key: String, messageId: String, campaignId: String, batchId: String?,
        recipient: String, isOtp: String?, status: String, retryCount: String, errorCode: String, createdAt: String,
        updatedAt: String
    ) {
        self.schema = schema
        self.table = table
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
    }

    /// `schema.table` as written in logs and the runs table.
    public var displayName: String { [schema, table].compactMap { $0 }.joined(separator: ".") }

    /// The table as quoted SQL.
    package var tableSQL: PGQuery {
        if let schema { return "\(qualified: [schema, table])" }
        return "\(identifier: table)"
    }

    /// One column of alias `a` (the agency table in every statement).
    package func column(_ name: String) -> PGQuery { "a.\(identifier: name)" }
}
