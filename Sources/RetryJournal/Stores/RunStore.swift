import Foundation
import LibPQ
import RetryCore
import RetrySettings

/// A message the engine works, as loaded from the journal.
public struct JournalItem: Sendable {
    public var messageId: String
    public var campaignId: String
    public var batchId: String?
    public var recipientMasked: String
    public var snapRetryCount: Int
    /// The row's retry_count before this job's retry (equals the snapshot until a pending write-back).
    public var baseRetryCount: Int
    public var attemptsBefore: Int?
    public var journalState: JournalState
    public var intentAt: Date?
    public var acceptedAt: Date?
    public var pollDeadline: Date?
    public var lastStatus: String?
    /// When this run's whole call of the message's batch, made for its current intent and not refused, was
    /// sent and answered (nil: no such call; only read for entries past `selected`).
    public var batchCallSentAt: Date?
    public var batchCallAnsweredAt: Date?
}

/// How a message ended in this run, ready to be recorded (and written back when `update` is set).
/// `outcome` and `result` are the raw values of `JournalOutcome` and `JournalResult`, as the engine
/// hands them over.
public struct Settlement: Sendable {
    public var messageId: String
    public var outcome: String
    public var result: String?
    public var update: RowUpdate?
    public var lastStatus: String?
    public var postmanRetries: Int?
    public var newestError: String?
    public var httpStatus: Int?
    public var postmanCode: String?
    public var postmanMessage: String?
    public var unknownStatus: String?
    public var acceptedAt: Date?

    public init(
        messageId: String, outcome: String, result: String? = nil, update: RowUpdate? = nil, lastStatus: String? = nil,
        postmanRetries: Int? = nil, newestError: String? = nil, httpStatus: Int? = nil, postmanCode: String? = nil,
        postmanMessage: String? = nil, unknownStatus: String? = nil, acceptedAt: Date? = nil
    ) {
        self.messageId = messageId
        self.outcome = outcome
        self.result = result
        self.update = update
        self.lastStatus = lastStatus
        self.postmanRetries = postmanRetries
        self.newestError = newestError
        self.httpStatus = httpStatus
        self.postmanCode = postmanCode
        self.postmanMessage = postmanMessage
        self.unknownStatus = unknownStatus
        self.acceptedAt = acceptedAt
    }
}

/// The run's writes to the journal, by concern: the run record (RunStore+RunRecord), selection and
/// carry-over (+Selection), intents and Postman's answers (+Intents), settlement and write-back
/// (+Settlement). Statements that complete a step run in one transaction with the write-back they
/// belong to.
public struct RunStore: Sendable {
    public let db: PGConnection
    public let table: AgencyTable
    /// `run --worker`: every journal write of a campaign first checks, in its own transaction, that this
    /// worker still holds the campaign's lease (nil: a plain run, which holds the run lock instead).
    public var fence: LeaseFence?
    /// Every journal write first checks, in its own transaction, that this process still holds the run
    /// (`run_holders`); nil only where nothing is held (tests of the store alone, `plan`).
    public var holder: HolderFence?

    public init(db: PGConnection, table: AgencyTable, fence: LeaseFence? = nil, holder: HolderFence? = nil) {
        self.db = db
        self.table = table
        self.fence = fence
        self.holder = holder
    }

    /// Every transaction on the journal: fenced by this process's hold on the run (`RunHolder`) and, for a
    /// worker's campaign, by the campaign's lease, so a process that lost either can change nothing the
    /// new holder relies on.
    @discardableResult
    func write<T: Sendable>(_ body: @Sendable (isolated PGConnection) throws -> T) async throws -> T {
        let fence = self.fence
        let holder = self.holder
        return try await db.withTransaction { db in
            if let holder { try HolderStore.check(holder, db) }
            if let fence { try LeaseStore.check(fence, db) }
            return try body(db)
        }
    }
}

extension RunStore {
    /// `write` for statements that do not depend on each other's rows: the fences and the statements go
    /// to the server in one pipeline, then COMMIT (two round trips instead of one per statement; issue
    /// 17). The same guarantee as `write`, whose fences run first: a fence that finds its row gone fails
    /// on the server, so the statements after it never run (an empty result could not stop them), and
    /// that failure is `HoldLost` or `LeaseLost`. A fence that fails for another reason (a lock timeout,
    /// a lost connection) throws the database's error. `read` gets the statements' rows, in order.
    func writePipelined<T: Sendable>(
        _ statements: [PGQuery], then read: @Sendable ([PGRows]) throws -> T
    ) async throws -> T {
        var fences: [(query: PGQuery, lost: any Error)] = []
        if let holder { fences.append((HolderStore.checkQuery(holder), HoldLost())) }
        if let fence { fences.append((LeaseStore.checkQuery(fence), LeaseLost(campaign: fence.campaign))) }
        let count = fences.count
        do {
            return try await db.pipelinedTransaction(fences.map { Self.failingWhenEmpty($0.query) } + statements) { rows in
                try read(Array(rows.dropFirst(count)))
            }
        } catch var error as PGError {
            // Only the fence's own failure means the row is gone: a fence that failed otherwise (a lock or
            // statement timeout, a dropped connection) is the database error it is.
            if let index = error.statementIndex, index < count, error.message.contains(Self.fenceGone) {
                throw fences[index].lost
            }
            // The caller's statements are numbered from its own first one, fences or not.
            if let index = error.statementIndex { error.statementIndex = index >= count ? index - count : nil }
            throw error
        }
    }

    /// The text of a fence's failure: PostgreSQL quotes it in its error (in any language it speaks).
    static let fenceGone = "postman-retry: this process's hold or lease is gone"

    /// `check` (a fence's `SELECT … FOR KEY SHARE`) as a statement that fails when it finds no row. The
    /// text is built from `count(*)`, so the planner cannot fold the cast and fail every time.
    private static func failingWhenEmpty(_ check: PGQuery) -> PGQuery {
        """
        SELECT (CASE WHEN count(*) = 0 THEN \(Self.fenceGone + " (") || count(*) || ')' END)::int AS missing
        FROM (\(fragment: check)) AS fence
        """
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }
}
