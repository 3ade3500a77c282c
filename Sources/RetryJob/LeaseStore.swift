import Foundation
import LibPQ
import RetryCore

/// The SQL of `run --worker`: campaign leases in `postman_retry.campaign_leases`.
///
/// A lease is taken with `FOR UPDATE SKIP LOCKED`, so two workers asking at once never get the same
/// campaign and never wait for each other. Expiry is judged by the database clock (`now()`), the one
/// clock every worker shares.
struct LeaseStore: Sendable {
    let db: PGConnection
    let run: Int64
    let workerId: String

    private static func leases() -> PGQuery { "\(qualified: [Migrator.schema, "campaign_leases"])" }

    /// Workers hold the run lock in shared mode, for their whole session: any number of workers run
    /// together, while a plain `run` (which takes it exclusively) and workers exclude each other.
    static func tryLockShared(_ db: PGConnection) async throws -> Bool {
        try await db.execute("SELECT pg_try_advisory_lock_shared(\(RunStore.lockKey)) AS locked")[0].decode("locked")
    }

    /// One worker at a time opens the run, carries pending messages over and selects ("pmrs").
    static let setupLockKey: Int64 = 0x706D_7273

    static func trySetupLock(_ db: PGConnection) async throws -> Bool {
        try await db.execute("SELECT pg_try_advisory_lock(\(setupLockKey)) AS locked")[0].decode("locked")
    }

    static func setupUnlock(_ db: PGConnection) async {
        _ = try? await db.execute("SELECT pg_advisory_unlock(\(setupLockKey))")
    }

    /// A lease for every campaign that has open messages in the run. A campaign marked done that has
    /// open messages again (only after a plain `run` worked the same run) is opened again.
    func ensureLeases() async throws {
        try await db.execute(
            """
            INSERT INTO \(fragment: Self.leases()) AS l (run_id, campaign_id)
            SELECT DISTINCT run_id, campaign_id FROM \(qualified: [Migrator.schema, "journal"])
            WHERE run_id = \(run) AND state <> 'done'
            ON CONFLICT (run_id, campaign_id) DO UPDATE SET done = false WHERE l.done
            """)
    }

    /// A lease taken by this worker.
    struct Claim: Sendable {
        var campaign: String
        /// The worker that held it before and stopped renewing it (nil: it was free).
        var takenFrom: String?
    }

    /// Takes one free or expired lease, if there is one.
    func claim(ttl: Duration) async throws -> Claim? {
        let rows = try await db.execute(
            """
            WITH candidate AS (
                SELECT run_id, campaign_id, worker_id FROM \(fragment: Self.leases())
                WHERE run_id = \(run) AND NOT done AND (worker_id IS NULL OR expires_at < now())
                ORDER BY campaign_id
                LIMIT 1
                FOR UPDATE SKIP LOCKED
            )
            UPDATE \(fragment: Self.leases()) l
            SET worker_id = \(workerId), acquired_at = now(), heartbeat_at = now(),
                expires_at = now() + make_interval(secs => \(ttl.seconds)),
                takeovers = l.takeovers + CASE WHEN c.worker_id IS NULL THEN 0 ELSE 1 END
            FROM candidate c
            WHERE l.run_id = c.run_id AND l.campaign_id = c.campaign_id
            RETURNING l.campaign_id, c.worker_id AS previous
            """)
        guard let row = rows.first else { return nil }
        return Claim(campaign: try row.decode("campaign_id"), takenFrom: try row.optional("previous"))
    }

    /// Extends every lease this worker holds; returns the campaigns it still holds (a lease that
    /// expired and was taken over is missing from the answer).
    func renew(_ campaigns: [String], ttl: Duration) async throws -> Set<String> {
        guard !campaigns.isEmpty else { return [] }
        let rows = try await db.execute(
            """
            UPDATE \(fragment: Self.leases())
            SET heartbeat_at = now(), expires_at = now() + make_interval(secs => \(ttl.seconds))
            WHERE run_id = \(run) AND worker_id = \(workerId) AND campaign_id = ANY(\(campaigns)::text[])
            RETURNING campaign_id
            """)
        return Set(try rows.map { try $0.decode("campaign_id", as: String.self) })
    }

    /// The campaign is finished: its lease is never taken again in this run.
    func markDone(_ campaign: String) async throws {
        try await db.execute(
            """
            UPDATE \(fragment: Self.leases()) SET done = true, heartbeat_at = now()
            WHERE run_id = \(run) AND campaign_id = \(campaign) AND worker_id = \(workerId)
            """)
    }

    /// This worker stops (signal): its leases are free at once for the other workers.
    func release(_ campaigns: [String]) async throws {
        guard !campaigns.isEmpty else { return }
        try await db.execute(
            """
            UPDATE \(fragment: Self.leases()) SET worker_id = NULL, expires_at = now()
            WHERE run_id = \(run) AND worker_id = \(workerId) AND campaign_id = ANY(\(campaigns)::text[]) AND NOT done
            """)
    }

    /// How many campaigns of the run are not done yet.
    func openCampaigns() async throws -> Int {
        try await db.execute(
            "SELECT count(*) AS n FROM \(fragment: Self.leases()) WHERE run_id = \(run) AND NOT done")[0].decode("n")
    }
}
