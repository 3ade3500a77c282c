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

    public init(id: Int64, resumed: Bool, scope: RunScope, selectionDone: Bool, startedAt: Date) {
        self.id = id
        self.resumed = resumed
        self.scope = scope
        self.selectionDone = selectionDone
        self.startedAt = startedAt
    }
}

/// The run record: opened (or resumed), completed, finished.
extension RunStore {
    public func openRun(scope: RunScope) async throws -> RunRecord {
        let table = self.table
        let scopeJSON = String(decoding: try JSONEncoder.sorted.encode(scope), as: UTF8.self)
        return try await write { db in
            let open = try db.execute(
                """
                UPDATE \(fragment: Schema.runs) SET status = \(literal: RunStatus.running), attempts = attempts + 1, last_error = NULL
                WHERE status IN \(literals: [RunStatus.running, .interrupted])
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
                INSERT INTO \(fragment: Schema.runs) (status, scope, agency_table)
                VALUES (\(literal: RunStatus.running), \(scopeJSON)::jsonb, \(table.displayName))
                RETURNING run_id, started_at
                """)[0]
            return RunRecord(
                id: try row.decode("run_id"), resumed: false, scope: scope, selectionDone: false,
                startedAt: try row.decode("started_at"))
        }
    }

    /// `run --worker`: the worker that sees every campaign done completes the run (once; the others
    /// find it completed already).
    /// Returns false when a message of the run is still open (its campaign must be worked again).
    public func completeRunIfRunning(run: Int64) async throws -> Bool {
        try await write { db in
            let open = try db.execute(
                "SELECT count(*) AS n FROM \(fragment: Schema.journal) WHERE run_id = \(run) AND state <> \(literal: JournalState.done)"
            )[0].decode("n", as: Int.self)
            guard open == 0 else { return false }
            try db.execute(
                """
                UPDATE \(fragment: Schema.runs) SET status = \(literal: RunStatus.completed), last_error = NULL, finished_at = now()
                WHERE run_id = \(run) AND status IN \(literals: [RunStatus.running, .interrupted])
                """)
            return true
        }
    }

    public func finishRun(run: Int64, status: RunStatus, error: String?) async throws {
        try await write { db in
            try db.execute(
                """
                UPDATE \(fragment: Schema.runs) SET status = \(status.rawValue), last_error = \(error),
                       finished_at = CASE WHEN \(status.rawValue) IN \(literals: [RunStatus.completed, .failed]) THEN now()
                                          ELSE finished_at END
                WHERE run_id = \(run)
                """)
        }
    }
}
