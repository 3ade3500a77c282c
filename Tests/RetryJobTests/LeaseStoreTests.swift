import Foundation
import LibPQ
import PostgresTestSupport
import RetryJournal
import RetrySettings
import Testing

@testable import RetryJob

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

        let first = try #require(try await workerA.claim(ttl: .seconds(30)))
        let other = try #require(try await workerB.claim(ttl: .seconds(30)))
        #expect(first.campaign == "a" && first.takenFrom == nil && first.epoch == 1)
        #expect(other.campaign == "b")
        #expect(try await workerA.claim(ttl: .seconds(30)) == nil, "a live lease is never taken")
        let heldA = LeaseStore.Held(campaign: "a", epoch: first.epoch)
        #expect(try await workerA.renew([heldA], ttl: .seconds(30)) == [heldA])

        // A stops renewing: once its lease has expired, B takes it over, at a new epoch.
        _ = try await db.query(
            "UPDATE postman_retry.campaign_leases SET expires_at = now() - interval '1 second' WHERE worker_id = 'A'")
        let takeover = try #require(try await workerB.claim(ttl: .seconds(30)))
        #expect(takeover.campaign == "a" && takeover.takenFrom == "A" && takeover.epoch == 2)
        #expect(try await workerA.renew([heldA], ttl: .seconds(30)).isEmpty, "A's heartbeat sees it lost the lease")
        let takeovers: Int = try await db.query(
            "SELECT takeovers FROM postman_retry.campaign_leases WHERE campaign_id = 'a'")[0].decode("takeovers")
        #expect(takeovers == 1)

        // A's release after losing the lease frees nothing; B finishes both campaigns.
        try await workerA.release([heldA])
        let heldB = [LeaseStore.Held(campaign: "a", epoch: 2), LeaseStore.Held(campaign: "b", epoch: other.epoch)]
        #expect(try await workerB.renew(heldB, ttl: .seconds(30)) == Set(heldB))
        try await workerB.markDone(heldB[0])
        #expect(try await workerB.openCampaigns() == 1)
        try await workerB.markDone(heldB[1])
        #expect(try await workerA.openCampaigns() == 0)
        #expect(try await workerA.claim(ttl: .seconds(30)) == nil, "a done campaign is never taken again")
        await second.close()
        await db.close()
    }

    /// Only a fence that finds its row gone means the lease is lost: one that waits past the session's
    /// lock timeout is the database error it is (it used to read as a lost lease, with its message).
    @Test func aFenceThatTimesOutIsADatabaseErrorNotALostLease() async throws {
        let (db, second, run) = try await Self.database()
        try await Self.addLeases(db, run: run, ["a"])
        let claimed = try #require(try await LeaseStore(db: db, run: run, workerId: "w").claim(ttl: .seconds(30)))
        let fence = LeaseFence(run: run, campaign: "a", workerId: "w", epoch: claimed.epoch)
        let store = RunStore(db: db, table: AgencyTable.reference, fence: fence)
        try await second.executeScript("BEGIN; SELECT 1 FROM postman_retry.campaign_leases FOR UPDATE")
        try await db.execute("SET lock_timeout = '200ms'")
        do {
            try await store.addCalls(run: run, APICallCounts(retry: 5))
            Issue.record("the fence should have waited past the lock timeout")
        } catch let error as PGError {
            #expect(error.sqlState?.code == "55P03", "\(error)")
        } catch {
            Issue.record("expected the database's error, got \(error)")
        }
        try await second.executeScript("COMMIT")
        try await store.addCalls(run: run, APICallCounts(retry: 5))
        let calls: Int = try await db.query("SELECT api_retry_calls FROM postman_retry.runs WHERE run_id = \(run)")[0]
            .decode("api_retry_calls")
        #expect(calls == 5, "the write goes through once the lock is gone")
        await second.close()
        await db.close()
    }

    @Test func aWorkerThatLostItsLeaseCanWriteNothing() async throws {
        let (db, second, run) = try await Self.database()
        try await Self.addLeases(db, run: run, ["a"])
        // Both workers have the same name (containers sharing a host name, all pid 1): only the epoch tells them apart.
        let old = LeaseStore(db: db, run: run, workerId: "same")
        let new = LeaseStore(db: second, run: run, workerId: "same")
        let first = try #require(try await old.claim(ttl: .seconds(30)))
        let fence = LeaseFence(run: run, campaign: "a", workerId: "same", epoch: first.epoch)
        let store = RunStore(db: db, table: AgencyTable.reference, fence: fence)
        try await store.addCalls(run: run, APICallCounts(retry: 1))

        _ = try await db.query("UPDATE postman_retry.campaign_leases SET expires_at = now() - interval '1 second'")
        let takeover = try #require(try await new.claim(ttl: .seconds(30)))
        #expect(takeover.epoch == first.epoch + 1)
        #expect(try await old.renew([LeaseStore.Held(campaign: "a", epoch: first.epoch)], ttl: .seconds(30)).isEmpty)
        await #expect(throws: LeaseLost.self) { try await store.addCalls(run: run, APICallCounts(retry: 5)) }
        let calls: Int = try await db.query("SELECT api_retry_calls FROM postman_retry.runs WHERE run_id = \(run)")[0]
            .decode("api_retry_calls")
        #expect(calls == 1, "the fenced write after the takeover changed nothing")
        // A worker never takes again a lease it holds but failed to renew: that would be two senders in one process.
        _ = try await db.query("UPDATE postman_retry.campaign_leases SET expires_at = now() - interval '1 second'")
        #expect(try await new.claim(ttl: .seconds(30), except: ["a"]) == nil)
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
        let claim = try #require(try await workerA.claim(ttl: .seconds(60)))
        #expect(claim.campaign == "a")
        try await workerA.release([LeaseStore.Held(campaign: "a", epoch: claim.epoch)])
        let again = try await workerB.claim(ttl: .seconds(60))
        #expect(again?.campaign == "a" && again?.takenFrom == nil, "a released lease is free, not a takeover")
        await second.close()
        await db.close()
    }
}
