import Foundation
import LibPQ
import RetryCore
import RetrySettings

/// The run record as stored in `postman_retry.runs`.
public struct RunRecord: Sendable {
    public var id: Int64
    public var resumed: Bool
    public var scope: RunScope
    public var selectionDone: Bool
    public var startedAt: Date
}

/// A message the engine works, as loaded from the journal.
struct JournalItem: Sendable {
    var messageId: String
    var campaignId: String
    var batchId: String?
    var recipientMasked: String
    var snapRetryCount: Int
    /// The row's retry_count before this job's retry (equals the snapshot until a pending write-back).
    var baseRetryCount: Int
    var attemptsBefore: Int?
    var state: String
    var intentAt: Date?
    var acceptedAt: Date?
    var pollDeadline: Date?
    var lastStatus: String?
}

/// How a message ended in this run, ready to be recorded (and written back when `update` is set).
struct Settlement: Sendable {
    var messageId: String
    var outcome: String
    var result: String?
    var update: RowUpdate?
    var lastStatus: String?
    var postmanRetries: Int?
    var newestError: String?
    var httpStatus: Int?
    var postmanCode: String?
    var postmanMessage: String?
    var unknownStatus: String?
    var acceptedAt: Date?
}

/// All SQL on the job's own schema. Statements that complete a step run in one transaction with
/// the write-back they belong to.
struct RunStore: Sendable {
    let db: PGConnection
    let table: AgencyTable
    /// `run --worker`: every journal write of a campaign first checks, in its own transaction, that this
    /// worker still holds the campaign's lease (nil: a plain run, which holds the run lock instead).
    var fence: LeaseFence? = nil
    /// Every journal write first checks, in its own transaction, that this process still holds the run
    /// (`postman_retry.run_holders`); nil only where nothing is held (tests of the store alone, `plan`).
    var holder: HolderFence? = nil

    private static func journal() -> PGQuery { "\(qualified: [Migrator.schema, "journal"])" }
    private static func runs() -> PGQuery { "\(qualified: [Migrator.schema, "runs"])" }

    /// Every transaction on the journal: fenced by this process's hold on the run (`RunHolder`) and, for a
    /// worker's campaign, by the campaign's lease, so a process that lost either can change nothing the
    /// new holder relies on.
    @discardableResult
    func write<T: Sendable>(_ body: @Sendable (isolated PGConnection) throws -> T) async throws -> T {
        let fence = self.fence
        let holder = self.holder
        return try await db.withTransaction { db in
            if let holder { try RunHolder.check(holder, db) }
            if let fence { try LeaseStore.check(fence, db) }
            return try body(db)
        }
    }

    func openRun(scope: RunScope) async throws -> RunRecord {
        let table = self.table
        let scopeJSON = String(decoding: try JSONEncoder.sorted.encode(scope), as: UTF8.self)
        return try await write { db in
            let open = try db.execute(
                """
                UPDATE \(fragment: Self.runs()) SET status = 'running', attempts = attempts + 1, last_error = NULL
                WHERE status IN ('running', 'interrupted')
                RETURNING run_id, scope::text AS scope, selection_done, started_at
                """)
            if let row = open.first {
                let stored = try JSONDecoder().decode(RunScope.self, from: Data(try row.decode("scope", as: String.self).utf8))
                return RunRecord(
                    id: try row.decode("run_id"), resumed: true, scope: stored,
                    selectionDone: try row.decode("selection_done"), startedAt: try row.decode("started_at"))
            }
            let row = try db.execute(
                """
                INSERT INTO \(fragment: Self.runs()) (status, scope, agency_table)
                VALUES ('running', \(scopeJSON)::jsonb, \(table.displayName))
                RETURNING run_id, started_at
                """)[0]
            return RunRecord(
                id: try row.decode("run_id"), resumed: false, scope: scope, selectionDone: false,
                startedAt: try row.decode("started_at"))
        }
    }

    /// Starts (or restarts) the selection of a run: counts from an interrupted selection are dropped.
    func resetSelectionCounts(run: Int64) async throws {
        try await write { db in
            try db.execute("DELETE FROM \(qualified: [Migrator.schema, "skips"]) WHERE run_id = \(run)")
            try db.execute("DELETE FROM \(qualified: [Migrator.schema, "malformed_rows"]) WHERE run_id = \(run)")
        }
    }

    /// How many messages an earlier, interrupted selection of this run already selected (carried-over
    /// messages are not selected and do not count against `--limit`).
    func selectedCount(run: Int64) async throws -> Int {
        try await db.query(
            "SELECT count(*) AS n FROM \(fragment: Self.journal()) WHERE run_id = \(run) AND origin = 'selected'")[0].decode("n")
    }

    /// Message ids already in this run's journal (a resumed selection must not count them again).
    func journaledIds(run: Int64) async throws -> Set<String> {
        let rows = try await db.query("SELECT message_id FROM \(fragment: Self.journal()) WHERE run_id = \(run)")
        return Set(try rows.map { try $0.decode("message_id", as: String.self) })
    }

    /// Records the selected rows of one page, with their snapshot (the compare-and-set witness).
    func recordSelected(run: Int64, rows: [CandidateRow], malformed: [(key: String, field: String, problem: String)]) async throws {
        guard !rows.isEmpty || !malformed.isEmpty else { return }
        let ids = rows.map { $0.messageId ?? "" }
        let campaigns = rows.map { $0.campaignId ?? "" }
        let batches: [String?] = rows.map(\.batchId)
        let keys = rows.map(\.key)
        let masked = rows.map { maskPhone($0.recipient) }
        let created = rows.map(\.createdAt)
        let statuses = rows.map(\.status)
        let counts = rows.map { $0.retryCount ?? 0 }
        let errors: [String?] = rows.map(\.errorCode)
        let updated: [String?] = rows.map(\.updatedAt)
        // The recipient goes to PostgreSQL only to be digested there; the journal keeps it masked.
        let recipients: [String?] = rows.map(\.recipient)
        let otp: [Bool?] = rows.map { table.isOtp == nil ? nil : $0.isOtp }
        let badKeys = malformed.map(\.key)
        let badFields = malformed.map(\.field)
        let problems = malformed.map(\.problem)
        try await write { db in
            if !ids.isEmpty {
                // attempts_before stays NULL: the witness is Postman's count, learnt before the call.
                try db.execute(
                    """
                    INSERT INTO \(fragment: Self.journal()) (run_id, message_id, campaign_id, batch_id, row_key,
                        recipient_masked, row_created_at, origin, snap_status, snap_retry_count, snap_error_code,
                        snap_updated_at, state, base_retry_count, snap_recipient_md5, snap_is_otp)
                    SELECT \(run), u.id, u.campaign, u.batch, u.key, u.masked, u.created, 'selected', u.status, u.count,
                           u.error, u.updated, 'selected', u.count, md5(u.recipient), u.otp
                    FROM unnest(\(ids)::text[], \(campaigns)::text[], \(batches)::text[], \(keys)::text[],
                                \(masked)::text[], \(created)::timestamptz[], \(statuses)::text[], \(counts)::int[],
                                \(errors)::text[], \(updated)::timestamptz[], \(recipients)::text[], \(otp)::bool[])
                         AS u(id, campaign, batch, key, masked, created, status, count, error, updated, recipient, otp)
                    ON CONFLICT DO NOTHING
                    """)
            }
            if !badKeys.isEmpty {
                try db.execute(
                    """
                    INSERT INTO \(qualified: [Migrator.schema, "malformed_rows"]) (run_id, row_key, field, problem)
                    SELECT \(run), u.key, u.field, u.problem
                    FROM unnest(\(badKeys)::text[], \(badFields)::text[], \(problems)::text[]) AS u(key, field, problem)
                    ON CONFLICT DO NOTHING
                    """)
            }
        }
    }

    func finishSelection(run: Int64, counts: [String: SelectionCounts]) async throws {
        var campaigns: [String] = []
        var reasons: [String] = []
        var numbers: [Int] = []
        for (campaign, count) in counts {
            for (reason, n) in count.skipped where n > 0 {
                campaigns.append(campaign)
                reasons.append(reason)
                numbers.append(n)
            }
        }
        let (campaignList, reasonList, numberList) = (campaigns, reasons, numbers)
        try await write { db in
            if !campaignList.isEmpty {
                try db.execute(
                    """
                    INSERT INTO \(qualified: [Migrator.schema, "skips"]) (run_id, campaign_id, reason, count)
                    SELECT \(run), u.c, u.r, u.n FROM unnest(\(campaignList)::text[], \(reasonList)::text[], \(numberList)::bigint[])
                        AS u(c, r, n)
                    """)
            }
            try db.execute("UPDATE \(fragment: Self.runs()) SET selection_done = true WHERE run_id = \(run)")
        }
    }

    /// Brings messages left pending by earlier runs into this run (polled again with a fresh deadline),
    /// and retires those whose retry is older than `neverFinalAfter`.
    func carryOverPending(run: Int64, campaigns: [String], deadline: Date, neverFinalAfter: Duration) async throws {
        let cutoffSeconds = Int(neverFinalAfter.seconds)
        let allCampaigns = campaigns.isEmpty
        try await write { db in
            try db.execute(
                """
                UPDATE \(fragment: Self.journal()) SET never_final = true
                WHERE result = 'pending' AND superseded_by_run IS NULL AND never_final = false AND run_id <> \(run)
                  AND accepted_at < now() - make_interval(secs => \(cutoffSeconds))
                  AND (\(allCampaigns) OR campaign_id = ANY(\(campaigns)::text[]))
                """)
            try db.execute(
                """
                WITH carried AS (
                    INSERT INTO \(fragment: Self.journal()) (run_id, message_id, campaign_id, batch_id, row_key,
                        recipient_masked, row_created_at, origin, carried_from_run, snap_status, snap_retry_count,
                        snap_error_code, snap_updated_at, state, attempts_before, base_retry_count, accepted_at,
                        poll_deadline, last_status, postman_retries)
                    SELECT \(run), j.message_id, j.campaign_id, j.batch_id, j.row_key, j.recipient_masked,
                           j.row_created_at, 'carried_over', j.run_id, j.snap_status, j.snap_retry_count,
                           j.snap_error_code, j.snap_updated_at, 'accepted', j.attempts_before, j.base_retry_count,
                           j.accepted_at,
                           \(deadline)::timestamptz, j.last_status, j.postman_retries
                    FROM \(fragment: Self.journal()) j
                    WHERE j.result = 'pending' AND j.superseded_by_run IS NULL AND j.never_final = false
                      AND j.run_id <> \(run) AND j.write_state = 'written'
                      AND (\(allCampaigns) OR j.campaign_id = ANY(\(campaigns)::text[]))
                    ON CONFLICT DO NOTHING
                    RETURNING message_id, carried_from_run
                )
                UPDATE \(fragment: Self.journal()) j SET superseded_by_run = \(run)
                FROM carried c WHERE j.run_id = c.carried_from_run AND j.message_id = c.message_id
                """)
        }
    }

    /// Where one campaign's stream of selected messages stands: the journal order's last key read.
    /// The time stays PostgreSQL's own text, so it round-trips exactly.
    struct ItemCursor: Sendable, Equatable {
        var createdAt: String
        var rowKey: String
        var messageId: String
    }

    /// One chunk of a campaign's open messages, and how many selected ones follow it.
    struct ItemChunk: Sendable {
        var items: [JournalItem]
        /// Nil when nothing follows.
        var next: ItemCursor?
        /// Selected messages after this chunk (counted on the first chunk only; nil on later ones).
        var remaining: Int?
    }

    /// The journal order of a campaign's messages: oldest first (CONTRACT.md section 3), a row without
    /// a creation time first, the message id last so the order is total.
    private static let itemOrder: PGQuery =
        "COALESCE(row_created_at, '-infinity'::timestamptz), row_key, message_id"

    private static let itemColumns: PGQuery = """
        message_id, campaign_id, batch_id, recipient_masked, snap_retry_count, base_retry_count,
        attempts_before, state, intent_at, accepted_at, poll_deadline, last_status,
        COALESCE(row_created_at, '-infinity'::timestamptz)::text AS cursor_at, row_key
        """

    /// The start of a campaign's open messages: every entry past `selected` (intents, accepted retries and
    /// carried-over messages, whose settling reads come first), then the first `limit` selected ones.
    /// A campaign of a million selected rows is worked a chunk at a time (issue 17: `run` streams).
    func firstItems(run: Int64, campaign: String, limit: Int) async throws -> ItemChunk {
        let started = try await db.query(
            """
            SELECT \(fragment: Self.itemColumns) FROM \(fragment: Self.journal())
            WHERE run_id = \(run) AND campaign_id = \(campaign) AND state NOT IN ('done', 'selected')
            ORDER BY \(fragment: Self.itemOrder)
            """)
        let selected = try await db.query(
            """
            SELECT \(fragment: Self.itemColumns), count(*) OVER () AS total FROM \(fragment: Self.journal())
            WHERE run_id = \(run) AND campaign_id = \(campaign) AND state = 'selected'
            ORDER BY \(fragment: Self.itemOrder) LIMIT \(limit)
            """)
        let total: Int = try selected.first?.decode("total") ?? 0
        var chunk = try Self.chunk(selected, limit: limit)
        chunk.items = try started.map(Self.item) + chunk.items
        chunk.remaining = total - selected.count
        return chunk
    }

    /// The next `limit` selected messages of a campaign after `cursor`, in journal order.
    func nextItems(run: Int64, campaign: String, after cursor: ItemCursor, limit: Int) async throws -> ItemChunk {
        let rows = try await db.query(
            """
            SELECT \(fragment: Self.itemColumns) FROM \(fragment: Self.journal())
            WHERE run_id = \(run) AND campaign_id = \(campaign) AND state = 'selected'
              AND (\(fragment: Self.itemOrder)) > (\(cursor.createdAt)::timestamptz, \(cursor.rowKey), \(cursor.messageId))
            ORDER BY \(fragment: Self.itemOrder) LIMIT \(limit)
            """)
        return try Self.chunk(rows, limit: limit)
    }

    /// Quiet hours began: the selected messages not yet read into memory wait for the next run too
    /// (counted with the others), without loading them.
    func deferSelected(run: Int64, campaign: String, after cursor: ItemCursor) async throws -> Int {
        try await write { db in
            let removed = try db.execute(
                """
                DELETE FROM \(fragment: Self.journal())
                WHERE run_id = \(run) AND campaign_id = \(campaign) AND state = 'selected'
                  AND (\(fragment: Self.itemOrder)) > (\(cursor.createdAt)::timestamptz, \(cursor.rowKey), \(cursor.messageId))
                """)
            try db.execute(
                """
                UPDATE \(fragment: Self.runs()) SET deferred_by_quiet_hours = deferred_by_quiet_hours + \(removed.affectedRows)
                WHERE run_id = \(run)
                """)
            return removed.affectedRows
        }
    }

    private static func chunk(_ rows: PGRows, limit: Int) throws -> ItemChunk {
        var next: ItemCursor?
        if rows.count >= limit, let last = rows.count > 0 ? rows[rows.count - 1] : nil {
            next = ItemCursor(
                createdAt: try last.decode("cursor_at"), rowKey: try last.decode("row_key"), messageId: try last.decode("message_id"))
        }
        return ItemChunk(items: try rows.map(Self.item), next: next, remaining: nil)
    }

    private static func item(_ row: PGRow) throws -> JournalItem {
        JournalItem(
            messageId: try row.decode("message_id"), campaignId: try row.decode("campaign_id"),
            batchId: try row.optional("batch_id"), recipientMasked: try row.decode("recipient_masked"),
            snapRetryCount: try row.optional("snap_retry_count") ?? 0,
            baseRetryCount: try row.optional("base_retry_count") ?? row.optional("snap_retry_count") ?? 0,
            attemptsBefore: try row.optional("attempts_before"),
            state: try row.decode("state"), intentAt: try row.optional("intent_at"), acceptedAt: try row.optional("accepted_at"),
            pollDeadline: try row.optional("poll_deadline"), lastStatus: try row.optional("last_status"))
    }

    /// How many messages of the run are not done yet (a run with any is not completed).
    func openCount(run: Int64) async throws -> Int {
        try await db.query(
            "SELECT count(*) AS n FROM \(fragment: Self.journal()) WHERE run_id = \(run) AND state <> 'done'")[0].decode("n")
    }

    /// The campaigns that have a message of the run not done yet (without loading the messages).
    func campaignsWithOpenItems(run: Int64) async throws -> Set<String> {
        let rows = try await db.query(
            "SELECT DISTINCT campaign_id FROM \(fragment: Self.journal()) WHERE run_id = \(run) AND state <> 'done'")
        return Set(try rows.map { try $0.decode("campaign_id", as: String.self) })
    }

    /// How many messages each campaign has in the agency table (to price a list sweep against single reads).
    func messageCounts(campaigns: [String]) async throws -> [String: Int] {
        guard !campaigns.isEmpty else { return [:] }
        let t = table
        let rows = try await db.query(
            """
            SELECT \(fragment: t.column(t.campaignId))::text AS campaign, count(*) AS n FROM \(fragment: t.tableSQL) a
            WHERE \(fragment: t.column(t.campaignId)) = ANY(\(campaigns)::text[]) GROUP BY 1
            """)
        var counts: [String: Int] = [:]
        for row in rows { counts[try row.decode("campaign")] = try row.decode("n") }
        return counts
    }

    /// The intent step, for one wave: in one transaction, each row is checked to be exactly as the job
    /// read it (every column the job relies on); those that are get `intent` with Postman's attempt
    /// count as the witness (committed BEFORE any retry call), the others are `conflict` and are
    /// neither retried nor written. An intent whose call did not land is committed again the same way.
    func commitIntents(run: Int64, messageIds: [String], witnesses: [Int]) async throws
        -> (intents: Set<String>, conflicts: Set<String>)
    {
        let table = self.table
        return try await write { db in try Self.commitIntents(db, table: table, run: run, messageIds: messageIds, witnesses: witnesses) }
    }

    static func commitIntents(
        _ db: isolated PGConnection, table t: AgencyTable, run: Int64, messageIds: [String], witnesses: [Int]
    ) throws -> (intents: Set<String>, conflicts: Set<String>) {
        var sameRow: PGQuery = """
            \(fragment: t.column(t.messageId)) = j.message_id
              AND \(fragment: t.column(t.status)) = j.snap_status
              AND \(fragment: t.column(t.retryCount)) = j.snap_retry_count
              AND \(fragment: t.column(t.errorCode)) IS NOT DISTINCT FROM j.snap_error_code
              AND \(fragment: t.column(t.updatedAt)) IS NOT DISTINCT FROM j.snap_updated_at
              AND \(fragment: t.column(t.campaignId))::text = j.campaign_id
              AND (j.snap_recipient_md5 IS NULL OR md5(\(fragment: t.column(t.recipient))::text) = j.snap_recipient_md5)
            """
        if let batch = t.batchId { sameRow.append(" AND \(fragment: t.column(batch))::text IS NOT DISTINCT FROM j.batch_id") }
        if let otp = t.isOtp {
            sameRow.append(" AND (j.snap_is_otp IS NULL OR \(fragment: t.column(otp))::boolean IS NOT DISTINCT FROM j.snap_is_otp)")
        }
        let ready = try db.execute(
            """
            UPDATE \(fragment: journal()) j SET state = 'intent', intent_at = now(), attempts_before = u.witness
            FROM unnest(\(messageIds)::text[], \(witnesses)::int[]) AS u(id, witness), \(fragment: t.tableSQL) a
            WHERE j.run_id = \(run) AND j.message_id = u.id AND j.state IN ('selected', 'intent')
              AND \(fragment: sameRow)
            RETURNING j.message_id
            """)
        let intents = Set(try ready.map { try $0.decode("message_id", as: String.self) })
        let changed = try db.execute(
            """
            UPDATE \(fragment: journal()) SET state = 'done', outcome = 'conflict', final_at = now()
            WHERE run_id = \(run) AND message_id = ANY(\(messageIds)::text[]) AND state IN ('selected', 'intent')
              AND NOT (message_id = ANY(\(Array(intents))::text[]))
            RETURNING message_id
            """)
        let conflicts = Set(try changed.map { try $0.decode("message_id", as: String.self) })
        return (intents, conflicts)
    }

    /// The intent of a whole-batch retry: every member's intent (with its witness and row check) and the
    /// batch call's row, in one transaction. When any member's row changed, or the batch was ever called
    /// whole before, no batch call may go out: the members whose rows are unchanged keep their intents
    /// and go by single retries.
    func commitBatchIntent(run: Int64, campaign: String, batch: String, messageIds: [String], witnesses: [Int])
        async throws -> (whole: Bool, intents: Set<String>, conflicts: Set<String>)
    {
        let table = self.table
        return try await write { db in
            let result = try Self.commitIntents(db, table: table, run: run, messageIds: messageIds, witnesses: witnesses)
            guard result.conflicts.isEmpty, result.intents.count == messageIds.count else {
                return (false, result.intents, result.conflicts)
            }
            let inserted = try db.execute(
                """
                INSERT INTO \(qualified: [Migrator.schema, "batch_calls"]) (campaign_id, batch_id, run_id, members)
                VALUES (\(campaign), \(batch), \(run), \(messageIds.count)) ON CONFLICT DO NOTHING
                """)
            return (inserted.affectedRows == 1, result.intents, result.conflicts)
        }
    }

    /// Records Postman's answer to a whole-batch call (for the report).
    func recordBatchAnswer(campaign: String, batch: String, httpStatus: Int?, code: String?) async throws {
        try await write { db in
            try db.execute(
                """
                UPDATE \(qualified: [Migrator.schema, "batch_calls"]) SET answered_at = now(), http_status = \(httpStatus),
                       postman_code = \(code)
                WHERE campaign_id = \(campaign) AND batch_id = \(batch)
                """)
        }
    }

    /// Batches of a campaign that were ever called whole (never again).
    func calledBatches(campaign: String) async throws -> Set<String> {
        let rows = try await db.query(
            "SELECT batch_id FROM \(qualified: [Migrator.schema, "batch_calls"]) WHERE campaign_id = \(campaign)")
        return Set(try rows.map { try $0.decode("batch_id", as: String.self) })
    }

    /// Unsent intents go back to `selected` (after a stop, or when the call was refused by 401/403).
    func revertIntents(run: Int64, messageIds: [String]) async throws {
        guard !messageIds.isEmpty else { return }
        try await write { db in
            try db.execute(
                """
                UPDATE \(fragment: Self.journal()) SET state = 'selected', intent_at = NULL
                WHERE run_id = \(run) AND message_id = ANY(\(messageIds)::text[]) AND state = 'intent'
                """)
        }
    }

    /// Quiet hours began: messages not yet sent leave this run's journal (they had no intent and no
    /// call, so nothing is lost) and are counted; the next run selects them again.
    func deferToNextRun(run: Int64, messageIds: [String]) async throws {
        guard !messageIds.isEmpty else { return }
        try await write { db in
            let removed = try db.execute(
                """
                DELETE FROM \(fragment: Self.journal())
                WHERE run_id = \(run) AND message_id = ANY(\(messageIds)::text[]) AND state = 'selected'
                """)
            try db.execute(
                """
                UPDATE \(fragment: Self.runs()) SET deferred_by_quiet_hours = deferred_by_quiet_hours + \(removed.affectedRows)
                WHERE run_id = \(run)
                """)
        }
    }

    /// Records accepted retries (201 seen): they are polled from now on.
    func recordAccepted(run: Int64, messageIds: [String], acceptedAt: [Date], deadlines: [Date]) async throws {
        guard !messageIds.isEmpty else { return }
        try await write { db in
            try db.execute(
                """
                UPDATE \(fragment: Self.journal()) j SET state = 'accepted', accepted_at = u.accepted, poll_deadline = u.deadline,
                       http_status = 201, outcome = 'retried'
                FROM unnest(\(messageIds)::text[], \(acceptedAt)::timestamptz[], \(deadlines)::timestamptz[]) AS u(id, accepted, deadline)
                WHERE j.run_id = \(run) AND j.message_id = u.id AND j.state IN ('intent', 'selected')
                """)
        }
    }

    /// Records settled messages and writes their outcome back to the agency table, in one transaction.
    /// A row that changed since the job read it is not overwritten: it is marked `conflict` in
    /// `write_state` and keeps its outcome.
    func settle(run: Int64, _ settlements: [Settlement], apiCalls: APICallCounts) async throws -> (written: Int, conflicts: [String]) {
        try await settle(run: run, settlements, apiCalls: [apiCalls])
    }

    /// `settle` with the call counts (and request timelines) of several campaigns, in one transaction.
    func settle(run: Int64, _ settlements: [Settlement], apiCalls: [APICallCounts]) async throws
        -> (written: Int, conflicts: [String])
    {
        let t = table
        let ids = settlements.map(\.messageId)
        let outcomes = settlements.map(\.outcome)
        let results: [String?] = settlements.map(\.result)
        let writes = settlements.map { $0.update == nil ? "none" : "pending" }
        let targetStatus: [String?] = settlements.map { $0.update?.status }
        let targetCount: [Int?] = settlements.map { $0.update?.retryCount }
        let setsError = settlements.map { $0.update?.errorCode != nil }
        let targetError: [String?] = settlements.map { $0.update?.errorCode ?? nil }
        let lastStatus: [String?] = settlements.map(\.lastStatus)
        let retries: [Int?] = settlements.map(\.postmanRetries)
        let newest: [String?] = settlements.map(\.newestError)
        let http: [Int?] = settlements.map(\.httpStatus)
        let codes: [String?] = settlements.map(\.postmanCode)
        let messages: [String?] = settlements.map(\.postmanMessage)
        let unknown: [String?] = settlements.map(\.unknownStatus)
        let accepted: [String?] = settlements.map { $0.acceptedAt.map(PGTimestamp.format) }
        return try await write { db in
            try db.execute(
                """
                UPDATE \(fragment: Self.journal()) j SET state = 'done', final_at = now(), outcome = u.outcome, result = u.result,
                    write_state = u.write, target_status = u.tstatus, target_retry_count = u.tcount,
                    target_sets_error = u.seterr, target_error_code = u.terror,
                    last_status = COALESCE(u.last, j.last_status), postman_retries = COALESCE(u.retries, j.postman_retries),
                    newest_error = u.newest, http_status = COALESCE(u.http, j.http_status), postman_code = u.code,
                    postman_message = u.message, unknown_status = COALESCE(u.unknown, j.unknown_status),
                    accepted_at = COALESCE(j.accepted_at, u.accepted)
                FROM unnest(\(ids)::text[], \(outcomes)::text[], \(results)::text[], \(writes)::text[], \(targetStatus)::text[],
                            \(targetCount)::int[], \(setsError)::bool[], \(targetError)::text[], \(lastStatus)::text[],
                            \(retries)::int[], \(newest)::text[], \(http)::int[], \(codes)::text[], \(messages)::text[],
                            \(unknown)::text[], \(accepted)::timestamptz[])
                     AS u(id, outcome, result, write, tstatus, tcount, seterr, terror, last, retries, newest, http, code,
                          message, unknown, accepted)
                WHERE j.run_id = \(run) AND j.message_id = u.id
                """)
            let written = try db.execute(
                """
                WITH done AS (
                    UPDATE \(fragment: t.tableSQL) a SET
                        \(identifier: t.status) = COALESCE(j.target_status, \(fragment: t.column(t.status))),
                        \(identifier: t.retryCount) = COALESCE(j.target_retry_count, \(fragment: t.column(t.retryCount))),
                        \(identifier: t.errorCode) = CASE WHEN j.target_sets_error THEN j.target_error_code
                                                     ELSE \(fragment: t.column(t.errorCode)) END,
                        \(identifier: t.updatedAt) = clock_timestamp()
                    FROM \(fragment: Self.journal()) j
                    WHERE j.run_id = \(run) AND j.message_id = ANY(\(ids)::text[]) AND j.write_state = 'pending'
                      AND \(fragment: t.column(t.messageId)) = j.message_id
                      AND \(fragment: t.column(t.status)) = j.snap_status
                      AND \(fragment: t.column(t.retryCount)) = j.snap_retry_count
                      AND \(fragment: t.column(t.errorCode)) IS NOT DISTINCT FROM j.snap_error_code
                      AND \(fragment: t.column(t.updatedAt)) IS NOT DISTINCT FROM j.snap_updated_at
                    RETURNING j.message_id, \(fragment: t.column(t.status))::text AS s,
                              \(fragment: t.column(t.retryCount))::int AS rc, \(fragment: t.column(t.errorCode))::text AS e,
                              \(fragment: t.column(t.updatedAt)) AS u
                )
                UPDATE \(fragment: Self.journal()) j SET write_state = 'written', written_at = now(), snap_status = d.s,
                       snap_retry_count = d.rc, snap_error_code = d.e, snap_updated_at = d.u
                FROM done d WHERE j.run_id = \(run) AND j.message_id = d.message_id
                """)
            let conflicted = try db.execute(
                """
                UPDATE \(fragment: Self.journal()) SET write_state = 'conflict'
                WHERE run_id = \(run) AND message_id = ANY(\(ids)::text[]) AND write_state = 'pending'
                RETURNING message_id
                """)
            try Self.addCalls(db, run: run, apiCalls)
            return (written.affectedRows, try conflicted.map { try $0.decode("message_id", as: String.self) })
        }
    }

    static func addCalls(_ db: isolated PGConnection, run: Int64, _ calls: APICallCounts) throws {
        try addCalls(db, run: run, [calls])
    }

    /// The call counts of one or more campaigns: one update of the run's totals, one insert of every
    /// campaign's per-second counts (issue 17: a hundred campaigns used to write them one by one).
    static func addCalls(_ db: isolated PGConnection, run: Int64, _ parts: [APICallCounts]) throws {
        var total = APICallCounts()
        var timelines: [RequestTimeline] = []
        for calls in parts where !calls.isEmpty {
            total.add(calls)
            if let timeline = calls.timeline { timelines.append(timeline) }
        }
        guard !total.isEmpty else { return }
        try db.execute(
            """
            UPDATE \(fragment: runs()) SET api_retry_calls = api_retry_calls + \(total.retry),
                   api_poll_calls = api_poll_calls + \(total.poll), api_rate_limited = api_rate_limited + \(total.rateLimited),
                   api_batch_retry_calls = api_batch_retry_calls + \(total.batchRetry)
            WHERE run_id = \(run)
            """)
        try addRequestSeconds(db, run: run, timelines)
    }

    /// Per-second request counts for the report's rate chart (V002), in the same transaction as the
    /// call counts so the two always agree.
    static func addRequestSeconds(_ db: isolated PGConnection, run: Int64, _ timeline: RequestTimeline) throws {
        try addRequestSeconds(db, run: run, [timeline])
    }

    /// The per-second counts of several campaigns in one statement, and their rate limits in another. A
    /// campaign that shows up twice is summed first (one INSERT … ON CONFLICT may not touch a row twice).
    static func addRequestSeconds(_ db: isolated PGConnection, run: Int64, _ timelines: [RequestTimeline]) throws {
        var bySecond: [String: [Int64: RequestTimeline.Second]] = [:]
        var limits: [String: Int] = [:]
        for timeline in timelines where !timeline.seconds.isEmpty {
            limits[timeline.campaign] = timeline.rateLimit
            for (second, counts) in timeline.seconds {
                bySecond[timeline.campaign, default: [:]][second, default: .init()].requests += counts.requests
                bySecond[timeline.campaign, default: [:]][second, default: .init()].rateLimited += counts.rateLimited
            }
        }
        guard !limits.isEmpty else { return }
        var campaigns: [String] = []
        var seconds: [Int64] = []
        var requests: [Int] = []
        var limited: [Int] = []
        for campaign in bySecond.keys.sorted() {
            let counts = bySecond[campaign]!
            for second in counts.keys.sorted() {
                campaigns.append(campaign)
                seconds.append(second)
                requests.append(counts[second]!.requests)
                limited.append(counts[second]!.rateLimited)
            }
        }
        try db.execute(
            """
            INSERT INTO \(qualified: [Migrator.schema, "request_seconds"]) (run_id, campaign_id, second, requests, rate_limited)
            SELECT \(run), u.c, to_timestamp(u.s), u.r, u.l
            FROM unnest(\(campaigns)::text[], \(seconds)::bigint[], \(requests)::int[], \(limited)::int[]) AS u(c, s, r, l)
            ON CONFLICT (run_id, campaign_id, second) DO UPDATE
                SET requests = request_seconds.requests + EXCLUDED.requests,
                    rate_limited = request_seconds.rate_limited + EXCLUDED.rate_limited
            """)
        let limitCampaigns = limits.keys.sorted()
        let limitValues = limitCampaigns.map { limits[$0]! }
        try db.execute(
            """
            INSERT INTO \(qualified: [Migrator.schema, "run_campaigns"]) (run_id, campaign_id, rate_limit)
            SELECT \(run), u.c, u.l FROM unnest(\(limitCampaigns)::text[], \(limitValues)::int[]) AS u(c, l)
            ON CONFLICT (run_id, campaign_id) DO UPDATE SET rate_limit = EXCLUDED.rate_limit
            """)
    }

    func addCalls(run: Int64, _ calls: APICallCounts) async throws {
        try await write { db in try Self.addCalls(db, run: run, calls) }
    }

    func addCalls(run: Int64, _ calls: [APICallCounts]) async throws {
        try await write { db in try Self.addCalls(db, run: run, calls) }
    }

    /// `run --worker`: the worker that sees every campaign done completes the run (once; the others
    /// find it completed already).
    /// Returns false when a message of the run is still open (its campaign must be worked again).
    func completeRunIfRunning(run: Int64) async throws -> Bool {
        try await write { db in
            let open = try db.execute(
                "SELECT count(*) AS n FROM \(fragment: Self.journal()) WHERE run_id = \(run) AND state <> 'done'")[0]
                .decode("n", as: Int.self)
            guard open == 0 else { return false }
            try db.execute(
                """
                UPDATE \(fragment: Self.runs()) SET status = 'completed', last_error = NULL, finished_at = now()
                WHERE run_id = \(run) AND status IN ('running', 'interrupted')
                """)
            return true
        }
    }

    func finishRun(run: Int64, status: String, error: String?) async throws {
        try await write { db in
            try db.execute(
                """
                UPDATE \(fragment: Self.runs()) SET status = \(status), last_error = \(error),
                       finished_at = CASE WHEN \(status) IN ('completed', 'failed') THEN now() ELSE finished_at END
                WHERE run_id = \(run)
                """)
        }
    }
}

/// HTTP requests sent, as CONTRACT.md counts them (every attempt, 429s included).
struct APICallCounts: Sendable {
    var retry = 0
    var poll = 0
    var rateLimited = 0
    /// Whole-batch retry requests (`POST …/batch/{id}/retry`).
    var batchRetry = 0
    /// The same requests by whole second, for the report (nil: not recorded).
    var timeline: RequestTimeline?

    var isEmpty: Bool { retry + poll + rateLimited + batchRetry == 0 }

    /// Counts that could not be recorded, kept for the next write (the timeline is not merged).
    mutating func add(_ other: APICallCounts) {
        retry += other.retry
        poll += other.poll
        rateLimited += other.rateLimited
        batchRetry += other.batchRetry
    }
}

/// One campaign's requests and 429 answers per whole second (Unix time), counted in memory and
/// flushed with the call counts.
struct RequestTimeline: Sendable {
    struct Second: Sendable {
        var requests = 0
        var rateLimited = 0
    }
    let campaign: String
    let rateLimit: Int
    var seconds: [Int64: Second] = [:]

    init(campaign: String, rateLimit: Int) {
        self.campaign = campaign
        self.rateLimit = rateLimit
    }

    private static func second(_ date: Date) -> Int64 { Int64(date.timeIntervalSince1970.rounded(.down)) }
    mutating func request(at date: Date = Date()) { seconds[Self.second(date), default: Second()].requests += 1 }
    mutating func rateLimited(at date: Date = Date()) { seconds[Self.second(date), default: Second()].rateLimited += 1 }
    /// A request counted but not sent after all (a stop seen at the last moment).
    mutating func cancelRequest(at date: Date = Date()) {
        let second = Self.second(date)
        if let count = seconds[second]?.requests, count > 0 { seconds[second]!.requests -= 1 } else {
            seconds[second - 1]?.requests -= 1
        }
    }
    /// An empty timeline for the same campaign (after a flush).
    var emptied: RequestTimeline { RequestTimeline(campaign: campaign, rateLimit: rateLimit) }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }
}
