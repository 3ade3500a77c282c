import Foundation
import LibPQ
import RetryCore

/// A campaign's open journal entries, read a chunk at a time (issue 17: `run` streams).
extension RunStore {
    /// Where one campaign's stream of selected messages stands: the journal order's last key read.
    /// The time stays PostgreSQL's own text, so it round-trips exactly.
    public struct ItemCursor: Sendable, Equatable {
        public var createdAt: String
        public var rowKey: String
        public var messageId: String
    }

    /// One chunk of a campaign's open messages, and how many selected ones follow it.
    public struct ItemChunk: Sendable {
        public var items: [JournalItem]
        /// Nil when nothing follows.
        public var next: ItemCursor?
        /// Selected messages after this chunk (counted on the first chunk only; nil on later ones).
        public var remaining: Int?
    }

    /// The journal order of a campaign's messages: oldest first (CONTRACT.md section 3), a row without a
    /// creation time first, the message id last so the order is total.
    private static let itemOrder: PGQuery = "COALESCE(row_created_at, '-infinity'::timestamptz), row_key, message_id"

    private static let itemColumns: PGQuery = """
        message_id, campaign_id, batch_id, recipient_masked, snap_retry_count, base_retry_count,
        attempts_before, state, intent_at, accepted_at, poll_deadline, last_status,
        COALESCE(row_created_at, '-infinity'::timestamptz)::text AS cursor_at, row_key
        """

    /// The start of a campaign's open messages: every entry past `selected` (intents, accepted retries and
    /// carried-over messages, whose settling reads come first), then the first `limit` selected ones.
    public func firstItems(run: Int64, campaign: String, limit: Int) async throws -> ItemChunk {
        // A member of a batch this run called whole may still be retried by Postman in the background: the
        // call's times go with it (`MessageLifecycle.Policy.batchSettleWindow`).
        let started = try await db.query(
            """
            SELECT \(fragment: Self.itemColumns), bc.batch_answered_at, bc.batch_sent_at
            FROM \(fragment: Schema.journal) j
            LEFT JOIN LATERAL (
                -- Only a call that may have gone out for this very intent, and that was not refused (a 4xx
                -- says no member was retried; a 5xx or an odd 2xx is a lost answer): an intent committed
                -- later is a single retry's.
                SELECT c.answered_at AS batch_answered_at, c.sent_at AS batch_sent_at
                FROM \(fragment: Schema.batchCalls) c
                WHERE c.campaign_id = j.campaign_id AND c.batch_id = j.batch_id AND c.run_id = j.run_id
                  AND c.sent_at IS NOT NULL AND j.intent_at <= c.sent_at
                  AND (c.http_status IS NULL OR c.http_status NOT BETWEEN 400 AND 499)
            ) bc ON true
            WHERE run_id = \(run) AND campaign_id = \(campaign)
              AND state NOT IN \(literals: [JournalState.done, JournalState.selected])
            ORDER BY \(fragment: Self.itemOrder)
            """)
        let selected = try await db.query(
            """
            SELECT \(fragment: Self.itemColumns), count(*) OVER () AS total FROM \(fragment: Schema.journal)
            WHERE run_id = \(run) AND campaign_id = \(campaign) AND state = \(literal: JournalState.selected)
            ORDER BY \(fragment: Self.itemOrder) LIMIT \(limit)
            """)
        let total: Int = try selected.first?.decode("total") ?? 0
        var chunk = try Self.chunk(selected, limit: limit)
        chunk.items = try Self.items(started, withBatchCalls: true) + chunk.items
        chunk.remaining = total - selected.count
        return chunk
    }

    /// The next `limit` selected messages of a campaign after `cursor`, in journal order.
    public func nextItems(run: Int64, campaign: String, after cursor: ItemCursor, limit: Int) async throws -> ItemChunk {
        let rows = try await db.query(
            """
            SELECT \(fragment: Self.itemColumns) FROM \(fragment: Schema.journal)
            WHERE run_id = \(run) AND campaign_id = \(campaign) AND state = \(literal: JournalState.selected)
              AND (\(fragment: Self.itemOrder)) > (\(cursor.createdAt)::timestamptz, \(cursor.rowKey), \(cursor.messageId))
            ORDER BY \(fragment: Self.itemOrder) LIMIT \(limit)
            """)
        return try Self.chunk(rows, limit: limit)
    }

    /// Quiet hours began: the selected messages not yet read into memory wait for the next run too
    /// (counted with the others), without being loaded.
    public func deferSelected(run: Int64, campaign: String, after cursor: ItemCursor) async throws -> Int {
        try await write { db in
            let removed = try db.execute(
                """
                DELETE FROM \(fragment: Schema.journal)
                WHERE run_id = \(run) AND campaign_id = \(campaign) AND state = \(literal: JournalState.selected)
                  AND (\(fragment: Self.itemOrder)) > (\(cursor.createdAt)::timestamptz, \(cursor.rowKey), \(cursor.messageId))
                """)
            try db.execute(
                """
                UPDATE \(fragment: Schema.runs) SET deferred_by_quiet_hours = deferred_by_quiet_hours + \(removed.affectedRows)
                WHERE run_id = \(run)
                """)
            return removed.affectedRows
        }
    }

    private static func chunk(_ rows: PGRows, limit: Int) throws -> ItemChunk {
        var next: ItemCursor?
        if rows.count >= limit, rows.count > 0 {
            let last = rows[rows.count - 1]
            next = ItemCursor(
                createdAt: try last.decode("cursor_at"), rowKey: try last.decode("row_key"),
                messageId: try last.decode("message_id"))
        }
        return ItemChunk(items: try items(rows), next: next, remaining: nil)
    }

    private static func items(_ rows: PGRows, withBatchCalls: Bool = false) throws -> [JournalItem] {
        try rows.compactMap { row in
            // V001's CHECK allows nothing else; a word this build does not know is left alone.
            guard let journalState = JournalState(rawValue: try row.decode("state")) else { return nil }
            var item = JournalItem(
                messageId: try row.decode("message_id"), campaignId: try row.decode("campaign_id"),
                batchId: try row.optional("batch_id"), recipientMasked: try row.decode("recipient_masked"),
                snapRetryCount: try row.optional("snap_retry_count") ?? 0,
                baseRetryCount: try row.optional("base_retry_count") ?? row.optional("snap_retry_count") ?? 0,
                attemptsBefore: try row.optional("attempts_before"),
                journalState: journalState, intentAt: try row.optional("intent_at"), acceptedAt: try row.optional("accepted_at"),
                pollDeadline: try row.optional("poll_deadline"), lastStatus: try row.optional("last_status"))
            if withBatchCalls {
                item.batchCallAnsweredAt = try row.optional("batch_answered_at")
                item.batchCallSentAt = try row.optional("batch_sent_at")
            }
            return item
        }
    }
}
