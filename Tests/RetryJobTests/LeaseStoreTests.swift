import Foundation
import LibPQ
import PostgresTestSupport
@testable import RetryJob
import Testing

/// The lease table's rules, on a real PostgreSQL: one holder per campaign, takeover only after expiry,
/// a renewal that notices a takeover.
@Suite struct LeaseStoreTests {
    static func database() async throws -> (PGConnection, PGConnection, Int64) {
        let (db, url) = try await TestDatabase.connect(prefix: "lease")
        _ = try await Migrator().migrate(db)
        let second = try await PGConnection.connect(PGConfiguration(url: url), logger: TestDatabase.logger)
        let run: Int64 = try await db.query(
            """
            INSERT INTO postman_retry.runs (status, scope, agency_table) VALUES ('running', '{}', 'outbound_messages')
            RETURNING run_id
            """)[0].decode("run_id")
        return (db, second, run)
    }

    static func addLeases(_ db: PGConnection, run: Int64, _ campaigns: [String]) async throws {
        _ = try await db.query(
            """
            INSERT INTO postman_retry.campaign_leases (run_id, campaign_id)
            SELECT \(run), c FROM unnest(\(campaigns)::text[]) AS c
            """)
    }

    @Test func oneHolderPerCampaignAndTakeoverOnlyAfterExpiry() async throws {
        let (db, second, run) = try await Self.database()
        try await Self.addLeases(db, run: run, ["a", "b"])
        let workerA = LeaseStore(db: db, run: run, workerId: "A")
        let workerB = LeaseStore(db: second, run: run, workerId: "B")

        let first = try await workerA.claim(ttl: .seconds(30))
        let other = try await workerB.claim(ttl: .seconds(30))
        #expect(first?.campaign == "a" && first?.takenFrom == nil)
        #expect(other?.campaign == "b")
        #expect(try await workerA.claim(ttl: .seconds(30)) == nil, "a live lease is never taken")
        #expect(try await workerA.renew(["a"], ttl: .seconds(30)) == ["a"])

        // A stops renewing: once its lease has expired, B takes it over.
        _ = try await db.query("UPDATE postman_retry.campaign_leases SET expires_at = now() - interval '1 second' WHERE worker_id = 'A'")
        let takeover = try await workerB.claim(ttl: .seconds(30))
        #expect(takeover?.campaign == "a" && takeover?.takenFrom == "A")
        #expect(try await workerA.renew(["a"], ttl: .seconds(30)).isEmpty, "A's heartbeat sees it lost the lease")
        let takeovers: Int = try await db.query(
            "SELECT takeovers FROM postman_retry.campaign_leases WHERE campaign_id = 'a'")[0].decode("takeovers")
        #expect(takeovers == 1)

        // A's release after losing the lease frees nothing; B finishes both campaigns.
        try await workerA.release(["a"])
        #expect(try await workerB.renew(["a", "b"], ttl: .seconds(30)) == ["a", "b"])
        try await workerB.markDone("a")
        #expect(try await workerB.openCampaigns() == 1)
        try await workerB.markDone("b")
        #expect(try await workerA.openCampaigns() == 0)
        #expect(try await workerA.claim(ttl: .seconds(30)) == nil, "a done campaign is never taken again")
        await second.close()
        await db.close()
    }

    @Test func workersClaimingTogetherNeverGetTheSameCampaign() async throws {
        let (db, second, run) = try await Self.database()
        let campaigns = (1...12).map { "c\($0)" }
        try await Self.addLeases(db, run: run, campaigns)
        let stores = [LeaseStore(db: db, run: run, workerId: "A"), LeaseStore(db: second, run: run, workerId: "B")]
        let claimed = try await withThrowingTaskGroup(of: [String].self) { group in
            for store in stores {
                group.addTask {
                    var mine: [String] = []
                    while let claim = try await store.claim(ttl: .seconds(30)) { mine.append(claim.campaign) }
                    return mine
                }
            }
            var all: [String] = []
            for try await mine in group { all += mine }
            return all
        }
        #expect(claimed.sorted() == campaigns.sorted(), "each campaign leased exactly once")
        await second.close()
        await db.close()
    }

    @Test func releasedLeasesAreFreeAtOnce() async throws {
        let (db, second, run) = try await Self.database()
        try await Self.addLeases(db, run: run, ["a"])
        let workerA = LeaseStore(db: db, run: run, workerId: "A")
        let workerB = LeaseStore(db: second, run: run, workerId: "B")
        #expect(try await workerA.claim(ttl: .seconds(60))?.campaign == "a")
        try await workerA.release(["a"])
        let claim = try await workerB.claim(ttl: .seconds(60))
        #expect(claim?.campaign == "a" && claim?.takenFrom == nil, "a released lease is free, not a takeover")
        await second.close()
        await db.close()
    }
}
