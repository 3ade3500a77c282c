import Foundation
import LibPQ
import RetryCore
import RetrySettings

/// What one `settle` did to the agency table.
public struct Settled: Sendable {
    /// Rows written.
    public var written: Int
    /// Messages whose row changed since it was read: not written.
    public var conflicts: [String]
    /// Messages whose write the table refused (its CHECK, enum, column size or trigger), with PostgreSQL's
    /// message: not written, `write_state = 'refused'`.
    public var refused: [(id: String, error: String)] = []
}

/// Settlement and write-back: the final journal entry of each message, the agency row's update guarded
/// by the snapshot, and the run's call counts in the same transaction.
extension RunStore {
    /// Records settled messages and writes their outcome back to the agency table, in one transaction.
    /// A row that changed since the job read it is not overwritten: it is marked `conflict` in
    /// `write_state` and keeps its outcome.
    public func settle(run: Int64, _ settlements: [Settlement], apiCalls: APICallCounts) async throws -> Settled {
        try await settle(run: run, settlements, apiCalls: [apiCalls])
    }

    /// `settle` with the call counts (and request timelines) of several campaigns, in one transaction.
    public func settle(run: Int64, _ settlements: [Settlement], apiCalls: [APICallCounts]) async throws -> Settled {
        let t = table
        let ids = settlements.map(\.messageId)
        let outcomes = settlements.map(\.outcome)
        let results: [String?] = settlements.map(\.result)
        let writes = settlements.map { ($0.update == nil ? WriteState.none : .pending).rawValue }
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
        let statements: [PGQuery] = [
            """
            UPDATE \(fragment: Schema.journal) j
            SET state = \(literal: JournalState.done), final_at = now(), outcome = u.outcome, result = u.result,
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
            """,
            Self.writeBackStatement(table: t, run: run, ids: ids),
            Self.conflictStatement(run: run, ids: ids)
        ]
        do {
            return try await writePipelined(statements + Self.callStatements(run: run, apiCalls)) { rows in
                Settled(
                    written: rows[1].affectedRows, conflicts: try rows[2].map { try $0.decode("message_id", as: String.self) })
            }
        } catch let error as PGError where Self.refusedByTable(error) && error.statementIndex == 1 {
            // The agency table refused a value of one of the rows (a CHECK, an enum, a varchar too short, a
            // trigger): the whole flush rolled back. Written again in halves down to the refused rows, only
            // those are left.
            return try await settleIsolatingRefusals(run: run, statements[0], ids: ids, apiCalls: apiCalls)
        }
    }

    /// An error of the agency table's own rules about a value: data exceptions (22: too long, out of
    /// range, bad enum value) and integrity violations (23: CHECK, NOT NULL, unique). A trigger's RAISE
    /// is P0001.
    static func refusedByTable(_ error: PGError) -> Bool {
        guard let state = error.sqlState else { return false }
        return ["22", "23"].contains(state.errorClass) || state.code == "P0001"
    }

    /// `settle` when the write-back as a whole was refused: the rows are written again in halves, each
    /// under a savepoint, down to the rows the table refuses (a few statements for one bad row among
    /// thousands, instead of one round trip per row), in one transaction with the journal's entries and the
    /// call counts. A row the table refuses keeps its outcome, is left as it is and gets
    /// `write_state = 'refused'` with PostgreSQL's message (the report names it); every other row is written
    /// or found changed as usual.
    func settleIsolatingRefusals(run: Int64, _ journalUpdate: PGQuery, ids: [String], apiCalls: [APICallCounts])
        async throws -> Settled
    {
        let table = self.table
        return try await write { db in
            try db.execute(journalUpdate)
            var written = 0
            var refused: [(id: String, error: String)] = []
            var parts: [ArraySlice<String>] = [ids[...]]
            while let part = parts.popLast() {
                try db.execute("SAVEPOINT write_back")
                do {
                    written += try db.execute(Self.writeBackStatement(table: table, run: run, ids: Array(part))).affectedRows
                    try db.execute("RELEASE SAVEPOINT write_back")
                } catch let error as PGError where Self.refusedByTable(error) {
                    try db.execute("ROLLBACK TO SAVEPOINT write_back")
                    if part.count == 1 {
                        refused.append((part.first!, error.message))
                    } else {
                        let middle = part.startIndex + part.count / 2
                        parts.append(part[middle...])
                        parts.append(part[..<middle])
                    }
                }
            }
            if !refused.isEmpty {
                try db.execute(
                    """
                    UPDATE \(fragment: Schema.journal) j SET write_state = \(literal: WriteState.refused), write_error = u.e
                    FROM unnest(\(refused.map(\.id))::text[], \(refused.map(\.error))::text[]) AS u(id, e)
                    WHERE j.run_id = \(run) AND j.message_id = u.id AND j.write_state = \(literal: WriteState.pending)
                    """)
            }
            let conflicts = try db.execute(Self.conflictStatement(run: run, ids: ids)).map {
                try $0.decode("message_id", as: String.self)
            }
            for statement in Self.callStatements(run: run, apiCalls) { try db.execute(statement) }
            return Settled(written: written, conflicts: conflicts, refused: refused)
        }
    }

    /// The compare-and-set write-back of `ids`' pending entries, and the journal's record of what was written.
    static func writeBackStatement(table t: AgencyTable, run: Int64, ids: [String]) -> PGQuery {
        """
        WITH done AS (
            UPDATE \(fragment: t.tableSQL) a SET
                \(identifier: t.status) = COALESCE(j.target_status, \(fragment: t.column(t.status))),
                \(identifier: t.retryCount) = COALESCE(j.target_retry_count, \(fragment: t.column(t.retryCount))),
                \(identifier: t.errorCode) = CASE WHEN j.target_sets_error THEN j.target_error_code
                                             ELSE \(fragment: t.column(t.errorCode)) END,
                \(identifier: t.updatedAt) = clock_timestamp()
            FROM \(fragment: Schema.journal) j
            WHERE j.run_id = \(run) AND j.message_id = ANY(\(ids)::text[]) AND j.write_state = \(literal: WriteState.pending)
              AND \(fragment: Self.rowAsRead(t))
            RETURNING j.message_id, \(fragment: t.column(t.status))::text AS s,
                      \(fragment: t.column(t.retryCount))::int AS rc, \(fragment: t.column(t.errorCode))::text AS e,
                      \(fragment: t.column(t.updatedAt)) AS u
        )
        UPDATE \(fragment: Schema.journal) j
        SET write_state = \(literal: WriteState.written), written_at = now(), snap_status = d.s,
               snap_retry_count = d.rc, snap_error_code = d.e, snap_updated_at = d.u
        FROM done d WHERE j.run_id = \(run) AND j.message_id = d.message_id
        """
    }

    /// What is still pending after the write-back met a changed row: `conflict`.
    static func conflictStatement(run: Int64, ids: [String]) -> PGQuery {
        """
        UPDATE \(fragment: Schema.journal) SET write_state = \(literal: WriteState.conflict)
        WHERE run_id = \(run) AND message_id = ANY(\(ids)::text[]) AND write_state = \(literal: WriteState.pending)
        RETURNING message_id
        """
    }

    /// The call counts of one or more campaigns: one update of the run's totals, one insert of every
    /// campaign's per-second counts (issue 17: a hundred campaigns used to write them one by one).
    static func callStatements(run: Int64, _ parts: [APICallCounts]) -> [PGQuery] {
        var total = APICallCounts()
        var timelines: [RequestTimeline] = []
        for calls in parts where !calls.isEmpty {
            total.add(calls)
            if let timeline = calls.timeline { timelines.append(timeline) }
        }
        guard !total.isEmpty else { return [] }
        let totals: PGQuery = """
            UPDATE \(fragment: Schema.runs) SET api_retry_calls = api_retry_calls + \(total.retry),
                   api_poll_calls = api_poll_calls + \(total.poll), api_rate_limited = api_rate_limited + \(total.rateLimited),
                   api_batch_retry_calls = api_batch_retry_calls + \(total.batchRetry)
            WHERE run_id = \(run)
            """
        return [totals] + requestSecondStatements(run: run, timelines)
    }

    /// Per-second request counts for the report's rate chart (V002), in the same transaction as the call
    /// counts so the two always agree: the counts of every campaign in one statement, and their rate
    /// limits in another. A campaign that shows up twice is summed first (one INSERT … ON CONFLICT may not
    /// touch a row twice).
    static func requestSecondStatements(run: Int64, _ timelines: [RequestTimeline]) -> [PGQuery] {
        var bySecond: [String: [Int64: RequestTimeline.Second]] = [:]
        var limits: [String: Int] = [:]
        for timeline in timelines where !timeline.seconds.isEmpty {
            limits[timeline.campaign] = timeline.rateLimit
            for (second, counts) in timeline.seconds {
                bySecond[timeline.campaign, default: [:]][second, default: .init()].requests += counts.requests
                bySecond[timeline.campaign, default: [:]][second, default: .init()].rateLimited += counts.rateLimited
            }
        }
        guard !limits.isEmpty else { return [] }
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
        let counts: PGQuery = """
            INSERT INTO \(fragment: Schema.requestSeconds) (run_id, campaign_id, second, requests, rate_limited)
            SELECT \(run), u.c, to_timestamp(u.s), u.r, u.l
            FROM unnest(\(campaigns)::text[], \(seconds)::bigint[], \(requests)::int[], \(limited)::int[]) AS u(c, s, r, l)
            ON CONFLICT (run_id, campaign_id, second) DO UPDATE
                SET requests = request_seconds.requests + EXCLUDED.requests,
                    rate_limited = request_seconds.rate_limited + EXCLUDED.rate_limited
            """
        let limitCampaigns = limits.keys.sorted()
        let limitValues = limitCampaigns.map { limits[$0]! }
        let rateLimits: PGQuery = """
            INSERT INTO \(fragment: Schema.runCampaigns) (run_id, campaign_id, rate_limit)
            SELECT \(run), u.c, u.l FROM unnest(\(limitCampaigns)::text[], \(limitValues)::int[]) AS u(c, l)
            ON CONFLICT (run_id, campaign_id) DO UPDATE SET rate_limit = EXCLUDED.rate_limit
            """
        return [counts, rateLimits]
    }

    public func addCalls(run: Int64, _ calls: APICallCounts) async throws {
        try await addCalls(run: run, [calls])
    }

    public func addCalls(run: Int64, _ calls: [APICallCounts]) async throws {
        try await writePipelined(Self.callStatements(run: run, calls)) { _ in }
    }
}
