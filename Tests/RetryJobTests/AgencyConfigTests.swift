import EngineTestSupport
import Foundation
import LibPQ
import PostgresTestSupport
import PostmanSimulator
import RetryConfig
import RetryCore
import RetryJob
import RetryJournal
import RetrySettings
import SampleData
import Synchronization
import Testing

/// Issue 6: an agency table of another shape, mapped by a config file, behaves exactly like the
/// reference table; the OTP campaign list, quiet hours and hostile names work as documented.
@Suite(.serialized) struct AgencyConfigTests {
    /// A schema-qualified, mixed-case table with other names, other types (text key, varchar ids,
    /// smallint count, timestamps without time zone) and extra columns.
    static let secondTableSQL = """
        CREATE SCHEMA "Agency Data";
        CREATE TABLE "Agency Data"."Outbound SMS" (
            "MsgKey"        text PRIMARY KEY,
            "postmanId"     varchar(200) NOT NULL UNIQUE,
            "Campaign"      varchar(100) NOT NULL,
            batch           varchar(100),
            phone           varchar(20)  NOT NULL,
            otp_flag        boolean      NOT NULL DEFAULT false,
            "Delivery State" varchar(30) NOT NULL,
            retries         smallint     NOT NULL DEFAULT 0,
            last_error      varchar(100),
            sent_at         timestamp    NOT NULL,
            modified        timestamp    NOT NULL,
            notes           text,
            department      integer
        );
        CREATE INDEX ON "Agency Data"."Outbound SMS" (sent_at, "MsgKey") WHERE "Delivery State" = 'failure';
        -- The same rows as the reference table; the key is zero-padded so it orders like the id.
        INSERT INTO "Agency Data"."Outbound SMS"
        SELECT lpad(id::text, 12, '0'), message_id, campaign_id, batch_id, recipient, is_otp, status,
               retry_count, error_code, created_at::timestamp, updated_at::timestamp, 'note <b>' || id, 7
        FROM outbound_messages;
        """

    static func secondTable(_ db: PGConnection) async throws -> [String: EngineFixture.RowState] {
        var states: [String: EngineFixture.RowState] = [:]
        for row in try await db.query(
            #"SELECT "postmanId" AS id, "Delivery State" AS status, retries, last_error FROM "Agency Data"."Outbound SMS""#)
        {
            states[try row.decode("id")] = .init(
                status: try row.decode("status"), retryCount: try row.decode("retries"), errorCode: try row.optional("last_error")
            )
        }
        return states
    }

    /// Compares two final tables; a message still in flight may have moved on by a status.
    static func sameOutcome(_ a: EngineFixture.RowState, _ b: EngineFixture.RowState) -> Bool {
        let inFlight = { (s: String) in !["success", "failure", "sent_to_telco"].contains(s) }
        if inFlight(a.status) && inFlight(b.status) { return a.retryCount == b.retryCount && a.errorCode == b.errorCode }
        return a == b
    }

    @Test func aSecondTableShapeGivesTheSameResultsAsTheReferenceTable() async throws {
        let reference = try await EngineFixture.make(seed: 21)
        let second = try await EngineFixture.make(seed: 21)
        try await second.db.executeScript(PGQuery(unsafeSQL: Self.secondTableSQL))
        let mapping = try ConfigFile.parse(QuotedAgencyTable.config, path: "second.toml")
        var secondSettings = second.settings()
        secondSettings.table = try #require(mapping.table)
        #expect(secondSettings.table.displayName == "Agency Data.Outbound SMS")

        // plan prints the same counts against both shapes.
        let planReference = try await Plan.compute(db: reference.db, settings: reference.settings())
        let planSecond = try await Plan.compute(db: second.db, settings: secondSettings)
        #expect(planReference.text == planSecond.text)
        #expect(planReference.selected > 0 && planReference.skipped > 0)

        // The deadline is generous: both runs must see every outcome the simulator gives, also when a busy
        // CI machine slows this process (a 4 s deadline once left six rows of one run at `created`).
        let referenceSettings = reference.settings(pollTimeout: .seconds(10))
        secondSettings.pollTimeout = .seconds(10)
        let resultReference = try await reference.run(referenceSettings)
        let resultSecond = try await second.run(secondSettings)
        #expect(resultSecond.exitStatus == .completed)
        #expect(resultReference.summary.counts == resultSecond.summary.counts)
        #expect(resultSecond.summary.counts.retried > 0 && resultSecond.summary.counts.addsUp)

        let referenceTable = try await reference.table()
        let secondTable = try await Self.secondTable(second.db)
        #expect(referenceTable.count == secondTable.count)
        for (id, state) in referenceTable {
            let other = try #require(secondTable[id])
            #expect(Self.sameOutcome(state, other), "\(id): reference \(state), second table \(other)")
        }
        // The job wrote only its four columns: the reference table is untouched, extra columns kept.
        let untouched: Int = try await second.db.query(
            "SELECT count(*) AS n FROM outbound_messages WHERE retry_count > 0 AND status = 'success'")[0].decode("n")
        #expect(untouched == 0)
        let notes: Int = try await second.db.query(
            #"SELECT count(*) AS n FROM "Agency Data"."Outbound SMS" WHERE notes LIKE 'note <b>%' AND department = 7"#)[0].decode(
                "n")
        #expect(notes == secondTable.count)
        let ledger = await second.sim.ledger()
        #expect(ledger.acceptedRetries.values.allSatisfy { $0 == 1 })
        await reference.stop()
        await second.stop()
    }

    @Test func aCampaignListOTPRuleSkipsThatCampaign() async throws {
        let fixture = try await EngineFixture.make(campaigns: 2, messages: 6, mixed: false)
        let config = try ConfigFile.parse("[otp]\ncampaigns = [\"campaign-2\"]\n")
        var settings = fixture.settings()
        settings.rules = SelectionRules(otpCampaigns: Set(try #require(config.otpCampaigns)))
        let plan = try await Plan.compute(db: fixture.db, settings: settings)
        #expect(plan.skippedByReason["otp"] == 6)
        #expect(plan.selected == 6)
        let result = try await fixture.run(settings)
        #expect(result.summary.counts.skippedByReason["otp"] == 6)
        let ledger = await fixture.sim.ledger()
        #expect(ledger.requests.allSatisfy { $0.campaignId != "campaign-2" }, "nothing is sent for an OTP campaign")
        #expect(ledger.acceptedRetries.count == 6)
        await fixture.stop()
    }

    /// A clock that moves `step` each time it is read: the engine reads it once per wave and once
    /// before each retry.
    final class SteppingClock: Sendable {
        let start: Date
        let step: Double
        let reads = Mutex(0)
        init(start: Date, step: Double) {
            self.start = start
            self.step = step
        }
        func now() -> Date {
            let n = reads.withLock { value -> Int in
                defer { value += 1 }
                return value
            }
            return start.addingTimeInterval(Double(n) * step)
        }
    }

    @Test func quietHoursStopRetriesButNotPollingAndLeaveTheRestForTheNextRun() async throws {
        let fixture = try await EngineFixture.make(campaigns: 1, messages: 25, mixed: false)
        // 21:59 Singapore time; the clock moves 5 s each time it is read (each wave's commit and each
        // retry), so quiet hours (from 22:00) begin at the 12th read: about ten retries go out (waves
        // are 10, and the next one is committed while the current one is going out), then none.
        let start = try #require(PGTimestamp.parse("2026-12-01T21:59:00+08:00"))
        let clock = SteppingClock(start: start, step: 5)
        var settings = fixture.settings()
        settings.quietHours = try ConfigFile.parse("[quiet_hours]\nstart = \"22:00\"\nend = \"07:00\"\n").quietHours
        settings.wallClock = { clock.now() }
        settings.wholeBatchRetries = false  // one clock read per retry call, as the counts below assume

        let first = try await fixture.run(settings)
        let retried = first.summary.counts.retried
        #expect(first.exitStatus == .completed)
        #expect((5...15).contains(retried), "\(first.summary.counts)")
        #expect(first.summary.deferredByQuietHours == 25 - retried, "every message is either retried or deferred")
        #expect(first.summary.counts.selected == retried)
        #expect(
            first.summary.counts.succeeded + first.summary.counts.failed == retried, "polling went on after quiet hours began")
        #expect(first.summary.counts.addsUp)
        #expect(first.message?.contains("quiet hours") == true)
        var ledger = await fixture.sim.ledger()
        #expect(ledger.acceptedRetries.count == retried, "nothing was sent after quiet hours began")
        let table = try await fixture.table()
        #expect(table.values.filter { $0.retryCount == 0 && $0.status == "failure" }.count == 25 - retried)

        // The next run, outside quiet hours, retries those left over (and, as any run would, those
        // that failed again in the first run); the table's counts match Postman's.
        settings.wallClock = { start.addingTimeInterval(-3600) }
        let second = try await fixture.run(settings)
        #expect(second.runId != first.runId)
        #expect(second.summary.counts.retried == 25 - retried + first.summary.counts.failed)
        #expect(second.summary.deferredByQuietHours == 0)
        ledger = await fixture.sim.ledger()
        #expect(ledger.acceptedRetries.count == 25)
        let after = try await fixture.table()
        for (id, state) in after {
            #expect(
                ledger.acceptedRetries[id] == state.retryCount,
                "\(id): table \(state), Postman \(ledger.acceptedRetries[id] ?? 0)")
        }
        await fixture.stop()
    }

    /// Inside quiet hours from the start, with fewer messages than a list page: nothing is sent, the run
    /// ends (it used to wait forever for a message that a read had made ready), and all is deferred.
    @Test(.timeLimit(.minutes(1))) func aRunInsideQuietHoursEndsWithEverythingDeferred() async throws {
        let fixture = try await EngineFixture.make(campaigns: 1, messages: 1, mixed: false, seed: 65)
        let inside = try #require(PGTimestamp.parse("2026-12-01T23:30:00+08:00"))
        var settings = fixture.settings()
        settings.quietHours = try ConfigFile.parse("[quiet_hours]\nstart = \"22:00\"\nend = \"07:00\"\n").quietHours
        settings.wallClock = { inside }
        let finished = try await fixture.run(settings)
        #expect(finished.exitStatus == .completed)
        #expect(finished.summary.deferredByQuietHours == 1)
        #expect(await fixture.sim.ledger().acceptedRetries.isEmpty)
        let open: Int = try await fixture.db.query("SELECT count(*) AS n FROM postman_retry.journal WHERE state <> 'done'")[0]
            .decode("n")
        #expect(open == 0)
        await fixture.stop()
    }

    @Test func aHostileColumnNameInConfigCannotInjectSQL() async throws {
        let fixture = try await EngineFixture.make(campaigns: 1, messages: 4, mixed: false)
        let hostile = #"message_id\"; DROP TABLE outbound_messages; --"#
        let config = try ConfigFile.parse("[table.columns]\nmessage_id = \"\(hostile)\"\n")
        var settings = fixture.settings()
        settings.table = try #require(config.table)
        #expect(settings.table.messageId == #"message_id"; DROP TABLE outbound_messages; --"#)

        await #expect(throws: PGError.self) { _ = try await Plan.compute(db: fixture.db, settings: settings) }
        let check = try await TableCheck(table: settings.table).run(fixture.db)
        #expect(check.problems.count == 1)
        #expect(check.problems.first?.contains("no such column") == true)
        let rows: Int = try await fixture.db.query("SELECT count(*) AS n FROM outbound_messages")[0].decode("n")
        #expect(rows == 4, "the table is still there with its rows")
        await fixture.stop()
    }
}
