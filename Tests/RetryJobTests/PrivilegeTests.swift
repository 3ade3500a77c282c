import EngineTestSupport
import Foundation
import LibPQ
import PostmanSimulator
import RetryJob
import Testing

/// A database role that lacks a grant the job needs: found before anything is sent, exit 64 naming the
/// grant. A role without UPDATE on the agency table used to pass `config check`, send its retries (billed
/// SMS) and then stop at the write-back with exit 1.
@Suite struct PrivilegeTests {
    /// A login role of its own (roles are the cluster's: the name carries the test's database) with `grants`.
    static func role(_ fixture: EngineFixture, _ suffix: String, grants: [String]) async throws -> String {
        let database: String = try await fixture.db.query("SELECT current_database()::text AS d")[0].decode("d")
        let role = "\(database)_\(suffix)"
        try await fixture.db.execute(PGQuery(unsafeSQL: "CREATE ROLE \(role) LOGIN"))
        for grant in grants {
            try await fixture.db.execute(PGQuery(unsafeSQL: grant.replacingOccurrences(of: "ROLE", with: role)))
        }
        return role
    }

    static func binary(_ fixture: EngineFixture, as role: String, _ arguments: [String]) async throws -> SpawnedBinary.Exit {
        let process = try SpawnedBinary.start(
            CrashResumeTests.binary, arguments + ["--database-url", fixture.url + " user=\(role)"],
            environment: ContractStatementTests.binaryEnvironment(fixture))
        return await process.wait()
    }

    static let journalGrants = [
        "GRANT USAGE ON SCHEMA postman_retry TO ROLE",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA postman_retry TO ROLE"
    ]

    @Test func aRoleThatMayNotUpdateTheTableIsRefusedBeforeAnythingIsSent() async throws {
        let fixture = try await EngineFixture.make(databasePrefix: "grants", campaigns: 1, messages: 6, mixed: false, seed: 31)
        let reader = try await Self.role(
            fixture, "reader", grants: ["GRANT SELECT ON outbound_messages TO ROLE"] + Self.journalGrants)
        let check = try await Self.binary(fixture, as: reader, ["config", "check"])
        #expect(check.status == 64, "\(check.stdout)\(check.stderr)")
        #expect(check.stderr.contains("may not UPDATE") && check.stderr.contains("GRANT UPDATE ON"), "\(check.stderr)")
        let run = try await Self.binary(fixture, as: reader, ["run", "--poll-timeout", "3s"])
        #expect(run.status == 64, "\(run.stderr.suffix(1500))")
        #expect(run.stderr.contains("GRANT UPDATE ON"), "\(run.stderr.suffix(1500))")
        #expect(await fixture.sim.ledger().requests.isEmpty, "requests sent by a run that could not write them back")
        // plan reads only: it works with SELECT alone.
        let plan = try await Self.binary(fixture, as: reader, ["plan"])
        #expect(plan.status == 0, "\(plan.stderr.suffix(1500))")
        // Without SELECT, plan names the grant too.
        let stranger = try await Self.role(fixture, "stranger", grants: [])
        let refused = try await Self.binary(fixture, as: stranger, ["plan"])
        #expect(refused.status == 64, "\(refused.stderr.suffix(1500))")
        #expect(refused.stderr.contains("GRANT SELECT ON"), "\(refused.stderr.suffix(1500))")
        await fixture.stop()
    }

    @Test func aRoleThatMayNotWriteTheJournalIsRefusedBeforeAnythingIsSent() async throws {
        let fixture = try await EngineFixture.make(databasePrefix: "jgrants", campaigns: 1, messages: 6, mixed: false, seed: 32)
        let writer = try await Self.role(
            fixture, "writer",
            grants: [
                "GRANT SELECT, UPDATE ON outbound_messages TO ROLE", "GRANT USAGE ON SCHEMA postman_retry TO ROLE",
                "GRANT SELECT ON ALL TABLES IN SCHEMA postman_retry TO ROLE"
            ])
        let run = try await Self.binary(fixture, as: writer, ["run", "--poll-timeout", "3s"])
        #expect(run.status == 64, "\(run.stderr.suffix(1500))")
        #expect(run.stderr.contains("lacks SELECT, INSERT, UPDATE and DELETE on postman_retry."), "\(run.stderr.suffix(1500))")
        #expect(await fixture.sim.ledger().requests.isEmpty)
        // With the grants, the same role runs to the end.
        for grant in Self.journalGrants {
            try await fixture.db.execute(PGQuery(unsafeSQL: grant.replacingOccurrences(of: "ROLE", with: writer)))
        }
        let granted = try await Self.binary(fixture, as: writer, ["run", "--poll-timeout", "5s"])
        #expect(granted.status == 0, "\(granted.stderr.suffix(1500))")
        await fixture.stop()
    }
}
