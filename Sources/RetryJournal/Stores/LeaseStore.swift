import Foundation
import LibPQ
import RetryCore

/// The SQL of `run --worker`: campaign leases in `postman_retry.campaign_leases`.
///
/// A lease is taken with `FOR UPDATE SKIP LOCKED`, so two workers asking at once never get the same
/// campaign and never wait for each other. Expiry is judged by the database clock (`now()`), the one
/// clock every worker shares.
public struct LeaseStore: Sendable {
    public let db: PGConnection
    public let run: Int64
    public let workerId: String

    public init(db: PGConnection, run: Int64, workerId: String) {
        self.db = db
        self.run = run
        self.workerId = workerId
    }

    /// Each statement in a transaction of its own, so the connection's `SET LOCAL`s (the heartbeat
    /// connection's statement timeout, `synchronous_commit`) hold through a transaction pooler too.
    @discardableResult
    private func transaction(_ query: PGQuery) async throws -> PGRows {
        try await db.withTransaction { db in try db.execute(query) }
    }

    /// A lease for every campaign that has open messages in the run. A campaign marked done that has
    /// open messages again (after a plain `run` worked the same run) is opened again, free to take.
    public func ensureLeases() async throws {
        try await transaction(
            """
            INSERT INTO \(fragment: Schema.campaignLeases) AS l (run_id, campaign_id)
            SELECT DISTINCT run_id, campaign_id FROM \(fragment: Schema.journal)
            WHERE run_id = \(run) AND state <> \(literal: JournalState.done)
            ON CONFLICT (run_id, campaign_id) DO UPDATE SET done = false, worker_id = NULL, expires_at = NULL
            WHERE l.done
            """)
    }

    /// A lease taken by this worker.
    public struct Claim: Sendable {
        public var campaign: String
        /// The lease's fencing token for this take.
        public var epoch: Int64
        /// The worker that held it before and stopped renewing it (nil: it was free).
        public var takenFrom: String?
    }

    /// A campaign and the epoch this worker holds it at.
    public struct Held: Sendable, Hashable {
        public var campaign: String
        public var epoch: Int64

        public init(campaign: String, epoch: Int64) {
            self.campaign = campaign
            self.epoch = epoch
        }
    }

    /// Takes one free or expired lease, if there is one, other than the campaigns in `except` (this
    /// worker's own: a lease it holds but failed to renew must not be taken a second time).
    public func claim(ttl: Duration, except: [String] = []) async throws -> Claim? {
        let rows = try await transaction(
            """
            WITH candidate AS (
                SELECT run_id, campaign_id, worker_id FROM \(fragment: Schema.campaignLeases)
                WHERE run_id = \(run) AND NOT done AND (worker_id IS NULL OR expires_at < now())
                  AND campaign_id <> ALL(\(except)::text[])
                ORDER BY campaign_id
                LIMIT 1
                FOR UPDATE SKIP LOCKED
            )
            UPDATE \(fragment: Schema.campaignLeases) l
            SET worker_id = \(workerId), epoch = l.epoch + 1, acquired_at = now(), heartbeat_at = now(),
                expires_at = now() + make_interval(secs => \(ttl.seconds)),
                takeovers = l.takeovers + CASE WHEN c.worker_id IS NULL THEN 0 ELSE 1 END
            FROM candidate c
            WHERE l.run_id = c.run_id AND l.campaign_id = c.campaign_id
            RETURNING l.campaign_id, l.epoch, c.worker_id AS previous
            """)
        guard let row = rows.first else { return nil }
        return Claim(
            campaign: try row.decode("campaign_id"), epoch: try row.decode("epoch"), takenFrom: try row.optional("previous"))
    }

    /// Extends the leases this worker holds; returns those it still holds (a lease that expired and
    /// was taken over, even by a worker with the same name, is missing from the answer).
    public func renew(_ held: [Held], ttl: Duration) async throws -> Set<Held> {
        guard !held.isEmpty else { return [] }
        let rows = try await transaction(
            """
            UPDATE \(fragment: Schema.campaignLeases) l
            SET heartbeat_at = now(), expires_at = now() + make_interval(secs => \(ttl.seconds))
            FROM unnest(\(held.map(\.campaign))::text[], \(held.map(\.epoch))::bigint[]) AS h(campaign, epoch)
            WHERE l.run_id = \(run) AND l.worker_id = \(workerId) AND l.campaign_id = h.campaign AND l.epoch = h.epoch
            RETURNING l.campaign_id, l.epoch
            """)
        return Set(try rows.map { Held(campaign: try $0.decode("campaign_id"), epoch: try $0.decode("epoch")) })
    }

    /// The campaign is finished: its lease is never taken again in this run.
    public func markDone(_ held: Held) async throws {
        try await transaction(
            """
            UPDATE \(fragment: Schema.campaignLeases) SET done = true, heartbeat_at = now()
            WHERE run_id = \(run) AND campaign_id = \(held.campaign) AND worker_id = \(workerId) AND epoch = \(held.epoch)
            """)
    }

    /// This worker stops (signal): its leases are free at once for the other workers.
    public func release(_ held: [Held]) async throws {
        guard !held.isEmpty else { return }
        try await transaction(
            """
            UPDATE \(fragment: Schema.campaignLeases) l SET worker_id = NULL, expires_at = now()
            FROM unnest(\(held.map(\.campaign))::text[], \(held.map(\.epoch))::bigint[]) AS h(campaign, epoch)
            WHERE l.run_id = \(run) AND l.worker_id = \(workerId) AND l.campaign_id = h.campaign AND l.epoch = h.epoch
              AND NOT l.done
            """)
    }

    /// The fence of a journal write: inside the write's transaction, the lease must still be this
    /// worker's at the epoch it took. `FOR KEY SHARE` keeps a takeover (which locks the row `FOR UPDATE
    /// SKIP LOCKED`) out until the write commits, while letting this worker's own heartbeat through.
    public static func check(_ fence: LeaseFence, _ db: isolated PGConnection) throws {
        guard !(try db.execute(checkQuery(fence))).isEmpty else { throw LeaseLost(campaign: fence.campaign) }
    }

    /// The fence's statement: one row while the fence holds (`RunStore.writePipelined` turns none into a failure).
    static func checkQuery(_ fence: LeaseFence) -> PGQuery {
        """
        SELECT 1 AS held FROM \(fragment: Schema.campaignLeases)
        WHERE run_id = \(fence.run) AND campaign_id = \(fence.campaign) AND worker_id = \(fence.workerId)
          AND epoch = \(fence.epoch)
        FOR KEY SHARE
        """
    }

    /// This worker stopped: when no other worker holds a live lease of the run, the run is recorded as
    /// interrupted (what `runs` shows; the next `run` or `run --worker` resumes it either way).
    public func markInterruptedIfLast(error: String) async throws {
        try await transaction(
            """
            UPDATE \(fragment: Schema.runs) SET status = \(literal: RunStatus.interrupted), last_error = \(error)
            WHERE run_id = \(run) AND status = \(literal: RunStatus.running)
              AND NOT EXISTS (
                  SELECT 1 FROM \(fragment: Schema.campaignLeases)
                  WHERE run_id = \(run) AND NOT done AND worker_id <> \(workerId) AND expires_at > now())
            """)
    }

    /// How many campaigns of the run are not done yet.
    public func openCampaigns() async throws -> Int {
        try await transaction(
            "SELECT count(*) AS n FROM \(fragment: Schema.campaignLeases) WHERE run_id = \(run) AND NOT done")[0].decode("n")
    }
}

/// What a fenced journal write checks: this worker still holds `campaign` at `epoch`.
public struct LeaseFence: Sendable {
    public var run: Int64
    public var campaign: String
    public var workerId: String
    public var epoch: Int64

    public init(run: Int64, campaign: String, workerId: String, epoch: Int64) {
        self.run = run
        self.campaign = campaign
        self.workerId = workerId
        self.epoch = epoch
    }
}

/// A fenced journal write found the lease taken over: nothing was written.
public struct LeaseLost: Error, CustomStringConvertible {
    public var campaign: String
    public var description: String { "the lease of campaign \(campaign) was taken over by another worker" }
}
