import Foundation
import LibPQ
import RetryCore
import RetrySettings

/// The SQL of the run's hold (`postman_retry.run_holders`, V007) and its gate row; `RunHolder` in
/// RetryJob decides when each statement runs. The statements that take the hold run inside the
/// caller's transaction (they must share the gate row's lock), the others in one of their own.
public enum HolderStore {
    /// A row of `run_holders` that stands in the way of taking the hold.
    public struct Holder: Sendable {
        public var holderId: String
        public var workerId: String
        public var exclusive: Bool
        public var beats: Int64
    }

    /// Locks the gate row; every taking, giving up and setup mark passes through it. A process that
    /// vanished inside a transaction leaves its locks until the server notices; waiting for them is
    /// bounded (and the job's own transactions end idle ones in 5 s).
    public static func lockGate(_ db: isolated PGConnection) throws {
        _ = try db.execute("SELECT set_config('lock_timeout', '8s', true)")
        _ = try db.execute("SELECT id FROM \(fragment: Schema.runGate) WHERE id = 1 FOR UPDATE")
    }

    /// The backend of a postman-retry from before V007 that holds its run lock as a session advisory
    /// lock (it knows nothing of `run_holders`), or nil.
    public static func olderBinaryHolding(_ db: isolated PGConnection) throws -> Int32? {
        let rows = try db.execute(
            """
            SELECT pid FROM pg_locks
            WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND classid = 0 AND objid::bigint IN (\(Int64(0x706D_7272)), \(Int64(0x706D_7273))) AND objsubid = 1 AND granted
            LIMIT 1
            """)
        return try rows.first.map { try $0.decode("pid") }
    }

    /// Deletes the rows past `expires_at` (their process died); returns (holder, worker) of each.
    public static func deleteExpired(_ db: isolated PGConnection) throws -> [(holderId: String, workerId: String)] {
        try db.execute(
            "DELETE FROM \(fragment: Schema.runHolders) WHERE expires_at < clock_timestamp() RETURNING holder_id, worker_id"
        ).map { (try $0.decode("holder_id"), try $0.decode("worker_id")) }
    }

    /// Whether a holder's row was deleted after it expired (V011's trigger stamps the gate) less than
    /// `within` ago by the database's clock: its process may have requests on their way to Postman.
    public static func tookOverRecently(_ db: isolated PGConnection, within: Duration) throws -> Bool {
        try db.execute(
            """
            SELECT coalesce(last_takeover_at > clock_timestamp() - make_interval(secs => \(within.seconds)), false) AS recent
            FROM \(fragment: Schema.runGate) WHERE id = 1
            """
        ).first?.decode("recent") ?? true
    }

    /// The holders a new one cannot share with: every holder for an exclusive hold, else the exclusive ones.
    public static func conflicting(_ db: isolated PGConnection, exclusive: Bool) throws -> [Holder] {
        try db.execute(
            """
            SELECT holder_id, worker_id, exclusive, beats FROM \(fragment: Schema.runHolders)
            WHERE \(exclusive) OR exclusive
            """
        ).map {
            Holder(
                holderId: try $0.decode("holder_id"), workerId: try $0.decode("worker_id"),
                exclusive: try $0.decode("exclusive"), beats: try $0.decode("beats"))
        }
    }

    /// Nobody else holds anything now: campaign leases of workers that died are free at once (and a
    /// late write of such a worker fails its fence).
    public static func freeCampaignLeases(_ db: isolated PGConnection) throws {
        try db.execute(
            """
            UPDATE \(fragment: Schema.campaignLeases) SET worker_id = NULL, expires_at = now()
            WHERE NOT done AND worker_id IS NOT NULL
            """)
    }

    public static func insert(_ db: isolated PGConnection, holderId: String, workerId: String, exclusive: Bool, ttl: Duration)
        throws
    {
        try db.execute(
            """
            INSERT INTO \(fragment: Schema.runHolders) (holder_id, worker_id, exclusive, expires_at)
            VALUES (\(holderId), \(workerId), \(exclusive), clock_timestamp() + make_interval(secs => \(ttl.seconds)))
            """)
    }

    /// One heartbeat. False when the row is gone or has expired: it is never revived (another run may
    /// have taken its place), unless `evenIfExpired` (a test's stand-in for another live run).
    public static func renew(_ db: isolated PGConnection, holderId: String, ttl: Duration, evenIfExpired: Bool = false) throws
        -> Bool
    {
        var kept = false
        for statement in renewStatements(holderId: holderId, ttl: ttl, evenIfExpired: evenIfExpired) {
            kept = try !db.execute(statement).isEmpty
        }
        return kept
    }

    /// `renew` in one pipelined transaction (four times a second: two round trips instead of four).
    public static func renew(on db: PGConnection, holderId: String, ttl: Duration) async throws -> Bool {
        try await db.pipelinedTransaction(renewStatements(holderId: holderId, ttl: ttl, evenIfExpired: false)) { rows in
            !rows[1].isEmpty
        }
    }

    /// The heartbeat's statements; the second returns a row when the hold was kept.
    private static func renewStatements(holderId: String, ttl: Duration, evenIfExpired: Bool) -> [PGQuery] {
        [
            // A heartbeat lost in a PostgreSQL crash costs nothing: no need to wait for the disk.
            "SELECT set_config('synchronous_commit', 'off', true)",
            """
            UPDATE \(fragment: Schema.runHolders)
            SET heartbeat_at = now(), beats = beats + 1, expires_at = clock_timestamp() + make_interval(secs => \(ttl.seconds))
            WHERE holder_id = \(holderId) AND (\(evenIfExpired) OR expires_at >= clock_timestamp())
            RETURNING 1 AS kept
            """
        ]
    }

    /// Gives the row up: the next run may start at once. Under the gate's lock, as every take: the delete of
    /// a row that has expired fires V011's trigger, which updates the gate row, and taking the gate's lock
    /// after the row's would deadlock with a take that holds the gate and waits for the row. `stampTakeover`
    /// (V011 applied only) records a takeover on the gate as if the row had expired: the holder may have
    /// requests on their way (`RunHolder.release`).
    public static func release(_ db: isolated PGConnection, holderId: String, stampTakeover: Bool = false) throws {
        try lockGate(db)
        try db.execute("DELETE FROM \(fragment: Schema.runHolders) WHERE holder_id = \(holderId)")
        if stampTakeover {
            try db.execute("UPDATE \(fragment: Schema.runGate) SET last_takeover_at = clock_timestamp() WHERE id = 1")
        }
    }

    /// Takes the gate's setup mark (one worker at a time opens the shared run and selects). A mark whose
    /// holder expired is taken only after deleting that holder's row (which waits for any journal write
    /// of it in flight), so the old setter's next write fails its fence.
    public static func tryBeginSetup(_ db: isolated PGConnection, holderId: String) throws -> Bool {
        // The gate first, as every take does: the delete below fires V011's trigger on the gate row, and
        // locking an expired row before the gate deadlocked with a take holding the gate and waiting for it.
        try lockGate(db)
        try db.execute("DELETE FROM \(fragment: Schema.runHolders) WHERE expires_at < clock_timestamp()")
        return try !db.execute(
            """
            UPDATE \(fragment: Schema.runGate) SET setup_holder = \(holderId)
            WHERE id = 1 AND (setup_holder IS NULL OR setup_holder = \(holderId)
                OR setup_holder NOT IN (SELECT holder_id FROM \(fragment: Schema.runHolders)))
            RETURNING 1 AS began
            """
        ).isEmpty
    }

    public static func endSetup(_ db: isolated PGConnection, holderId: String) throws {
        try db.execute("UPDATE \(fragment: Schema.runGate) SET setup_holder = NULL WHERE id = 1 AND setup_holder = \(holderId)")
    }

    /// The fence of a journal write, inside its transaction: this process's row must still be there.
    /// `FOR KEY SHARE` keeps a run that would delete the (expired) row waiting until the write commits,
    /// and lets this process's own heartbeat through.
    public static func check(_ fence: HolderFence, _ db: isolated PGConnection) throws {
        guard !(try db.execute(checkQuery(fence))).isEmpty else { throw HoldLost() }
    }

    /// The fence's statement: one row while the fence holds (`RunStore.writePipelined` turns none into a failure).
    static func checkQuery(_ fence: HolderFence) -> PGQuery {
        "SELECT 1 AS held FROM \(fragment: Schema.runHolders) WHERE holder_id = \(fence.holderId) FOR KEY SHARE"
    }
}

/// What a journal write checks: the row of this process's hold is still there.
public struct HolderFence: Sendable {
    public var holderId: String

    public init(holderId: String) { self.holderId = holderId }
}

/// A fenced journal write found this process's hold taken away: nothing was written.
public struct HoldLost: ErrorWithExitStatus {
    public var description: String { "stopped: this run's hold was taken over by another run after its heartbeats stopped" }
    /// The run that took over goes on; the next run resumes whatever is left.
    public var exitStatus: ExitStatus { .temporary }

    public init() {}
}
