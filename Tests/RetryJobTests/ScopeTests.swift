import EngineTestSupport
import Foundation
import LibPQ
import PostmanSimulator
import RetryJob
import RetrySettings
import Testing

/// CONTRACT.md section 3, scope: `--max-age` (72 h), the `--since`/`--until` window on `created_at`, the
/// campaigns named by `--campaign`; rows out of scope are not looked at and not counted. Selected rows are
/// worked oldest first, and `--limit N` keeps the first N.
@Suite(.serialized) struct ScopeTests {
    /// Two campaigns of 6 failed rows each, at three ages per campaign: two rows 100 h old (out of the
    /// default 72 h), two 10 h old, two 1 h old; one row of each age of campaign-1 is an OTP (skipped).
    static func agedFixture() async throws -> EngineFixture {
        let fixture = try await EngineFixture.make(databasePrefix: "scope", campaigns: 2, messages: 6, mixed: false, seed: 97)
        for campaign in ["campaign-1", "campaign-2"] {
            let ids: [String] = try await fixture.db.query(
                "SELECT message_id FROM outbound_messages WHERE campaign_id = \(campaign) ORDER BY message_id"
            ).map { try $0.decode("message_id") }
            #expect(ids.count == 6)
            for (i, id) in ids.enumerated() {
                let hours = [100, 100, 10, 10, 1, 1][i]
                let otp = campaign == "campaign-1" && i % 2 == 1
                try await fixture.db.execute(
                    """
                    UPDATE outbound_messages SET created_at = now() - make_interval(hours => \(hours)) - make_interval(secs => \(i)),
                           is_otp = \(otp), retry_count = 0, error_code = NULL, status = 'failure'
                    WHERE message_id = \(id)
                    """)
            }
        }
        return fixture
    }

    func plan(_ fixture: EngineFixture, _ scope: RunScope) async throws -> Plan {
        var settings = fixture.settings()
        settings.scope = scope
        return try await Plan.compute(db: fixture.db, settings: settings)
    }

    @Test func theFiltersBoundWhatIsLookedAtAndCounted() async throws {
        let fixture = try await Self.agedFixture()
        let now = Date()
        let all = try await plan(fixture, RunScope())
        // Within 72 h: four rows per campaign; campaign-1's two OTPs among them are skipped.
        #expect(all.selected == 6 && all.skipped == 2, "selected \(all.selected), skipped \(all.skipped)")
        #expect(all.skippedByReason["otp"] == 2)

        let older = try await plan(fixture, RunScope(maxAgeSeconds: 200 * 3600))
        #expect(older.selected == 9 && older.skipped == 3, "a longer --max-age reaches the 100 h rows")

        let one = try await plan(fixture, RunScope(campaigns: ["campaign-2"]))
        #expect(one.selected == 4 && one.skipped == 0 && one.campaigns.map(\.campaignId) == ["campaign-2"])

        let recent = try await plan(fixture, RunScope(since: now.addingTimeInterval(-5 * 3600)))
        #expect(recent.selected == 3 && recent.skipped == 1, "--since: only the 1 h rows")

        let earlier = try await plan(fixture, RunScope(until: now.addingTimeInterval(-5 * 3600)))
        #expect(earlier.selected == 3 && earlier.skipped == 1, "--until: only the 10 h rows (max-age still applies)")

        let limited = try await plan(fixture, RunScope(limit: 2))
        #expect(limited.selected == 2, "--limit keeps the first N selected")
        await fixture.stop()
    }

    /// A run with `--limit 5` retries the five oldest selected rows in scope; each campaign works its own
    /// oldest first (campaigns go side by side).
    @Test func aLimitedRunWorksTheOldestFirst() async throws {
        let fixture = try await Self.agedFixture()
        // One request a second per campaign: the simulator sees the calls in the order they were sent (a burst
        // of concurrent calls arrives in any order).
        var settings = fixture.settings(rateLimits: ["campaign-1": 1, "campaign-2": 1])
        settings.scope = RunScope(limit: 5)
        settings.wholeBatchRetries = false
        let result = try await fixture.run(settings)
        #expect(result.exitStatus == .completed, "\(result.message ?? "")")
        let inScope: [(id: String, campaign: String)] = try await fixture.db.query(
            """
            SELECT message_id, campaign_id FROM outbound_messages
            WHERE created_at >= now() - interval '72 hours' AND NOT is_otp
            ORDER BY created_at, id
            """
        ).map { (try $0.decode("message_id"), try $0.decode("campaign_id")) }
        let oldest = inScope.prefix(5)
        let ledger = await fixture.sim.ledger()
        #expect(Set(ledger.acceptedRetries.keys) == Set(oldest.map(\.id)), "\(ledger.acceptedRetries.keys.sorted())")
        for campaign in ["campaign-1", "campaign-2"] {
            let posts = ledger.requests.filter { $0.method == "POST" && $0.campaignId == campaign }
            let order = posts.compactMap { $0.path.split(separator: "/").dropLast().last.map(String.init) }
            #expect(order == oldest.filter { $0.campaign == campaign }.map(\.id), "\(campaign) worked oldest first")
        }
        await fixture.stop()
    }
}
