import Foundation
import LibPQ
import RetryCore
import RetrySettings

/// Intents and Postman's answers: what is committed before a retry call, and what its answer records.
extension RunStore {
    /// The intent step, for one wave: in one transaction, each row is checked to be exactly as the job
    /// read it (every column the job relies on); those that are get `intent` with Postman's attempt
    /// count as the witness (committed BEFORE any retry call), the others are `conflict` and are
    /// neither retried nor written. An intent whose call did not land is committed again the same way.
    public func commitIntents(run: Int64, messageIds: [String], witnesses: [Int]) async throws
        -> (intents: Set<String>, conflicts: Set<String>)
    {
        let statement = Self.intentStatement(table: table, run: run, messageIds: messageIds, witnesses: witnesses)
        return try await writePipelined([statement]) { rows in try Self.intentResult(rows[0]) }
    }

    /// One statement for both halves of the intent step (so that it can go in a pipeline): the unchanged
    /// rows get their intents, and the rest of the wave, found by what the first half returned, is marked
    /// `conflict`. The two halves touch disjoint journal rows.
    static func intentStatement(table t: AgencyTable, run: Int64, messageIds: [String], witnesses: [Int]) -> PGQuery {
        let sameRow = rowAsRead(t)
        let notSent: [JournalState] = [.selected, .intent]
        return """
            WITH ready AS (
                UPDATE \(fragment: Schema.journal) j
                SET state = \(literal: JournalState.intent), intent_at = now(), attempts_before = u.witness
                FROM unnest(\(messageIds)::text[], \(witnesses)::int[]) AS u(id, witness), \(fragment: t.tableSQL) a
                WHERE j.run_id = \(run) AND j.message_id = u.id AND j.state IN \(literals: notSent)
                  AND \(fragment: sameRow)
                RETURNING j.message_id
            ), changed AS (
                UPDATE \(fragment: Schema.journal)
                SET state = \(literal: JournalState.done), outcome = \(literal: JournalOutcome.conflict), final_at = now()
                WHERE run_id = \(run) AND message_id = ANY(\(messageIds)::text[]) AND state IN \(literals: notSent)
                  AND message_id NOT IN (SELECT message_id FROM ready)
                RETURNING message_id
            )
            SELECT message_id, true AS intent FROM ready
            UNION ALL
            SELECT message_id, false AS intent FROM changed
            """
    }

    /// The agency row `a` is exactly as the journal entry `j` read it: every column the job relies on, the
    /// recipient by its digest. The intent step checks it before a retry call, and write-back before it
    /// writes (CONTRACT.md sections 2 and 4: a row changed underneath the job is never overwritten).
    static func rowAsRead(_ t: AgencyTable) -> PGQuery {
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
            sameRow.append(
                " AND (j.snap_is_otp IS NULL OR \(fragment: t.column(otp))::boolean IS NOT DISTINCT FROM j.snap_is_otp)")
        }
        return sameRow
    }

    /// The intents and the conflicts `intentStatement` returned.
    static func intentResult(_ rows: PGRows) throws -> (intents: Set<String>, conflicts: Set<String>) {
        var intents = Set<String>()
        var conflicts = Set<String>()
        for row in rows {
            let id = try row.decode("message_id", as: String.self)
            if try row.decode("intent", as: Bool.self) { intents.insert(id) } else { conflicts.insert(id) }
        }
        return (intents, conflicts)
    }

    /// The intent of a whole-batch retry: every member's intent (with its witness and row check) and the
    /// batch call's row, in one transaction. When any member's row changed, or the batch was ever called
    /// whole before, no batch call may go out: the members whose rows are unchanged keep their intents
    /// and go by single retries.
    public func commitBatchIntent(run: Int64, campaign: String, batch: String, messageIds: [String], witnesses: [Int])
        async throws -> (whole: Bool, intents: Set<String>, conflicts: Set<String>)
    {
        let table = self.table
        return try await write { db in
            let result = try Self.intentResult(
                db.execute(Self.intentStatement(table: table, run: run, messageIds: messageIds, witnesses: witnesses)))
            guard result.conflicts.isEmpty, result.intents.count == messageIds.count else {
                return (false, result.intents, result.conflicts)
            }
            let inserted = try db.execute(
                """
                INSERT INTO \(fragment: Schema.batchCalls) (campaign_id, batch_id, run_id, members)
                VALUES (\(campaign), \(batch), \(run), \(messageIds.count)) ON CONFLICT DO NOTHING
                """)
            return (inserted.affectedRows == 1, result.intents, result.conflicts)
        }
    }

    /// The whole-batch call is about to be sent (after a restart with no answer recorded, its members wait
    /// for Postman's background batch retry only when this was recorded).
    public func markBatchSent(campaign: String, batch: String) async throws {
        try await write { db in
            try db.execute(
                "UPDATE \(fragment: Schema.batchCalls) SET sent_at = now() WHERE campaign_id = \(campaign) AND batch_id = \(batch)"
            )
        }
    }

    /// Records Postman's answer to a whole-batch call (for the report).
    public func recordBatchAnswer(campaign: String, batch: String, httpStatus: Int?, code: String?) async throws {
        try await write { db in
            try db.execute(
                """
                UPDATE \(fragment: Schema.batchCalls) SET answered_at = now(), http_status = \(httpStatus),
                       postman_code = \(code)
                WHERE campaign_id = \(campaign) AND batch_id = \(batch)
                """)
        }
    }

    /// Batches of a campaign that were ever called whole (never again).
    public func calledBatches(campaign: String) async throws -> Set<String> {
        let rows = try await db.query(
            "SELECT batch_id FROM \(fragment: Schema.batchCalls) WHERE campaign_id = \(campaign)")
        return Set(try rows.map { try $0.decode("batch_id", as: String.self) })
    }

    /// Unsent intents go back to `selected` (after a stop, or when the call was refused by 401/403).
    public func revertIntents(run: Int64, messageIds: [String]) async throws {
        guard !messageIds.isEmpty else { return }
        try await write { db in
            try db.execute(
                """
                UPDATE \(fragment: Schema.journal) SET state = \(literal: JournalState.selected), intent_at = NULL
                WHERE run_id = \(run) AND message_id = ANY(\(messageIds)::text[]) AND state = \(literal: JournalState.intent)
                """)
        }
    }

    /// Quiet hours began: messages not yet sent leave this run's journal (they had no intent and no
    /// call, so nothing is lost) and are counted; the next run selects them again.
    public func deferToNextRun(run: Int64, messageIds: [String]) async throws {
        guard !messageIds.isEmpty else { return }
        try await write { db in
            let removed = try db.execute(
                """
                DELETE FROM \(fragment: Schema.journal)
                WHERE run_id = \(run) AND message_id = ANY(\(messageIds)::text[]) AND state = \(literal: JournalState.selected)
                """)
            try db.execute(
                """
                UPDATE \(fragment: Schema.runs) SET deferred_by_quiet_hours = deferred_by_quiet_hours + \(removed.affectedRows)
                WHERE run_id = \(run)
                """)
        }
    }

    /// Records accepted retries (201 seen): they are polled from now on.
    public func recordAccepted(run: Int64, messageIds: [String], acceptedAt: [Date], deadlines: [Date]) async throws {
        guard !messageIds.isEmpty else { return }
        let accepted: PGQuery = """
            UPDATE \(fragment: Schema.journal) j SET state = \(literal: JournalState.accepted), accepted_at = u.accepted,
                   poll_deadline = u.deadline, http_status = 201, outcome = \(literal: JournalOutcome.retried)
            FROM unnest(\(messageIds)::text[], \(acceptedAt)::timestamptz[], \(deadlines)::timestamptz[]) AS u(id, accepted, deadline)
            WHERE j.run_id = \(run) AND j.message_id = u.id AND j.state IN \(literals: [JournalState.intent, .selected])
            """
        try await writePipelined([accepted]) { _ in }
    }
}
