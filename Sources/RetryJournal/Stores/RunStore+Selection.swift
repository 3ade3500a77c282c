import Foundation
import LibPQ
import RetryCore
import RetrySettings

/// Selection and carry-over: which messages a run works, and what it has left open.
extension RunStore {
    /// Starts (or restarts) the selection of a run: counts from an interrupted selection are dropped.
    public func resetSelectionCounts(run: Int64) async throws {
        try await write { db in
            try db.execute("DELETE FROM \(fragment: Schema.skips) WHERE run_id = \(run)")
            try db.execute("DELETE FROM \(fragment: Schema.malformedRows) WHERE run_id = \(run)")
        }
    }

    /// How many messages an earlier, interrupted selection of this run already selected (carried-over
    /// messages are not selected and do not count against `--limit`).
    public func selectedCount(run: Int64) async throws -> Int {
        try await db.query(
            """
            SELECT count(*) AS n FROM \(fragment: Schema.journal) WHERE run_id = \(run) AND origin = \(literal: JournalOrigin.selected)
            """)[0].decode("n")
    }

    /// Which of `ids` this run's journal already holds, with the row each came from, keyed by the id's
    /// bytes (PostgreSQL tells apart ids that Swift's `==` takes for equal). Asked for each page of the
    /// selection: a resumed selection passes over its own rows, and a second row with one of these ids
    /// is a duplicate.
    public func journaledKeys(run: Int64, ids: [String]) async throws -> [[UInt8]: String] {
        guard !ids.isEmpty else { return [:] }
        let rows = try await db.query(
            """
            SELECT message_id, row_key FROM \(fragment: Schema.journal)
            WHERE run_id = \(run) AND message_id = ANY(\(ids)::text[])
            """)
        var keys: [[UInt8]: String] = [:]
        for row in rows { keys[Array(try row.decode("message_id", as: String.self).utf8)] = try row.decode("row_key") }
        return keys
    }

    /// Records the selected rows of one page, with their snapshot (the compare-and-set witness).
    ///
    /// `rows` hold each message id once. Returns the rows that were not recorded because the run already
    /// works their message id, each with the key of the row it works it from: another row (a mapped table
    /// without a UNIQUE message id; the caller names it `malformed`), or this same row met again. The
    /// journal has one entry per message, so such rows used to drop out of every count.
    @discardableResult
    public func recordSelected(run: Int64, rows: [CandidateRow], malformed: [(key: String, field: String, problem: String)])
        async throws -> [(row: CandidateRow, twinKey: String)]
    {
        guard !rows.isEmpty || !malformed.isEmpty else { return [] }
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
        let recorded: Set<[UInt8]> = try await write { db in
            var recorded: Set<[UInt8]> = []
            if !ids.isEmpty {
                // attempts_before stays NULL: the witness is Postman's count, learnt before the call.
                let inserted = try db.execute(
                    """
                    INSERT INTO \(fragment: Schema.journal) (run_id, message_id, campaign_id, batch_id, row_key,
                        recipient_masked, row_created_at, origin, snap_status, snap_retry_count, snap_error_code,
                        snap_updated_at, state, base_retry_count, snap_recipient_md5, snap_is_otp)
                    SELECT \(run), u.id, u.campaign, u.batch, u.key, u.masked, u.created, \(literal: JournalOrigin.selected),
                           u.status, u.count, u.error, u.updated, \(literal: JournalState.selected), u.count, md5(u.recipient), u.otp
                    FROM unnest(\(ids)::text[], \(campaigns)::text[], \(batches)::text[], \(keys)::text[],
                                \(masked)::text[], \(created)::timestamptz[], \(statuses)::text[], \(counts)::int[],
                                \(errors)::text[], \(updated)::timestamptz[], \(recipients)::text[], \(otp)::bool[])
                         AS u(id, campaign, batch, key, masked, created, status, count, error, updated, recipient, otp)
                    ON CONFLICT DO NOTHING
                    RETURNING message_id
                    """)
                recorded = Set(try inserted.map { Array(try $0.decode("message_id", as: String.self).utf8) })
            }
            if !badKeys.isEmpty {
                try db.execute(
                    """
                    INSERT INTO \(fragment: Schema.malformedRows) (run_id, row_key, field, problem)
                    SELECT \(run), u.key, u.field, u.problem
                    FROM unnest(\(badKeys)::text[], \(badFields)::text[], \(problems)::text[]) AS u(key, field, problem)
                    ON CONFLICT DO NOTHING
                    """)
            }
            return recorded
        }
        let duplicates = rows.filter { !recorded.contains(Array(($0.messageId ?? "").utf8)) }
        guard !duplicates.isEmpty else { return [] }
        let twins = try await db.query(
            """
            SELECT message_id, row_key FROM \(fragment: Schema.journal)
            WHERE run_id = \(run) AND message_id = ANY(\(duplicates.map { $0.messageId ?? "" })::text[])
            """)
        var twinKeys: [[UInt8]: String] = [:]
        for twin in twins { twinKeys[Array(try twin.decode("message_id", as: String.self).utf8)] = try twin.decode("row_key") }
        return duplicates.map { ($0, twinKeys[Array(($0.messageId ?? "").utf8)] ?? "") }
    }

    /// Ends the selection: the skip counts, by campaign and reason (`SelectionCounts.skipped`).
    public func finishSelection(run: Int64, skipped: [String: [String: Int]]) async throws {
        var campaigns: [String] = []
        var reasons: [String] = []
        var numbers: [Int] = []
        for (campaign, count) in skipped {
            for (reason, n) in count where n > 0 {
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
                    INSERT INTO \(fragment: Schema.skips) (run_id, campaign_id, reason, count)
                    SELECT \(run), u.c, u.r, u.n FROM unnest(\(campaignList)::text[], \(reasonList)::text[], \(numberList)::bigint[])
                        AS u(c, r, n)
                    """)
            }
            try db.execute("UPDATE \(fragment: Schema.runs) SET selection_done = true WHERE run_id = \(run)")
        }
    }

    /// Fresh planner statistics for the journal, once its run's entries are in. Without them PostgreSQL
    /// took a just-selected run for a handful of rows: every wave's intents and every flush joined its
    /// array of ids against all the run's entries, row by row (2.4-3.8 ms a statement at 6,000 entries, and
    /// growing with the run; issue 17). A role that does not own the journal gets a warning, not an error.
    public func refreshStatistics() async throws {
        _ = try await db.query("ANALYZE \(fragment: Schema.journal)")
    }

    /// Brings messages left pending by earlier runs into this run (polled again with a fresh deadline),
    /// and retires those whose retry is older than `neverFinalAfter`.
    public func carryOverPending(run: Int64, campaigns: [String], deadline: Date, neverFinalAfter: Duration) async throws {
        let cutoffSeconds = Int(neverFinalAfter.seconds)
        let allCampaigns = campaigns.isEmpty
        try await write { db in
            try db.execute(
                """
                UPDATE \(fragment: Schema.journal) SET never_final = true, never_final_run = \(run)
                WHERE result = \(literal: JournalResult.pending) AND superseded_by_run IS NULL AND never_final = false
                  AND run_id <> \(run)
                  AND accepted_at < now() - make_interval(secs => \(cutoffSeconds))
                  AND (\(allCampaigns) OR campaign_id = ANY(\(campaigns)::text[]))
                """)
            try db.execute(
                """
                WITH carried AS (
                    INSERT INTO \(fragment: Schema.journal) (run_id, message_id, campaign_id, batch_id, row_key,
                        recipient_masked, row_created_at, origin, carried_from_run, snap_status, snap_retry_count,
                        snap_error_code, snap_updated_at, state, attempts_before, base_retry_count, accepted_at,
                        poll_deadline, last_status, postman_retries, snap_recipient_md5, snap_is_otp)
                    SELECT \(run), j.message_id, j.campaign_id, j.batch_id, j.row_key, j.recipient_masked,
                           j.row_created_at, \(literal: JournalOrigin.carriedOver), j.run_id, j.snap_status, j.snap_retry_count,
                           j.snap_error_code, j.snap_updated_at, \(literal: JournalState.accepted), j.attempts_before,
                           j.base_retry_count, j.accepted_at,
                           \(deadline)::timestamptz, j.last_status, j.postman_retries, j.snap_recipient_md5, j.snap_is_otp
                    FROM \(fragment: Schema.journal) j
                    WHERE j.result = \(literal: JournalResult.pending) AND j.superseded_by_run IS NULL AND j.never_final = false
                      AND j.run_id <> \(run) AND j.write_state = \(literal: WriteState.written)
                      AND (\(allCampaigns) OR j.campaign_id = ANY(\(campaigns)::text[]))
                    ON CONFLICT DO NOTHING
                    RETURNING message_id, carried_from_run
                )
                UPDATE \(fragment: Schema.journal) j SET superseded_by_run = \(run)
                FROM carried c WHERE j.run_id = c.carried_from_run AND j.message_id = c.message_id
                """)
        }
    }

    /// How many messages of the run are not done yet (a run with any is not completed).
    public func openCount(run: Int64) async throws -> Int {
        try await db.query(
            "SELECT count(*) AS n FROM \(fragment: Schema.journal) WHERE run_id = \(run) AND state <> \(literal: JournalState.done)"
        )[0].decode("n")
    }

    /// The campaigns that have a message of the run not done yet (without loading the messages).
    public func campaignsWithOpenItems(run: Int64) async throws -> Set<String> {
        let rows = try await db.query(
            """
            SELECT DISTINCT campaign_id FROM \(fragment: Schema.journal) WHERE run_id = \(run) AND state <> \(literal: JournalState.done)
            """)
        return Set(try rows.map { try $0.decode("campaign_id", as: String.self) })
    }

    /// How many messages each campaign has in the agency table (to price a list sweep against single reads).
    public func messageCounts(campaigns: [String]) async throws -> [String: Int] {
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
}
