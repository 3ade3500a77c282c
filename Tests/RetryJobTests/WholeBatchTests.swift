import EngineTestSupport
import Foundation
import LibPQ
import PostmanSimulator
import RetryCore
import RetryJob
import RetryJournal
import RetrySettings
import SampleData
import Testing

/// Whole-batch retries (issue 15): one `POST …/batch/{id}/retry` for a batch whose retryable members are
/// exactly the run's, single retries for any batch with a member that must not be retried.
@Suite(.serialized) struct WholeBatchTests {
    /// Two batches of one campaign that failed in an incident: `incident` (every member selected) and
    /// `mixed` (one member is an OTP, which Postman would retry with the rest).
    static func incident(members: Int, options: SimulatorOptions? = nil) async throws -> EngineWorld {
        try await EngineFixture.make(campaigns: 1, messages: members + 6, mixed: false, seed: 71, options: options) { data in
            let campaign = data.simulator.campaigns[0].id
            data.simulator.batches = [
                .init(id: "incident", campaignId: campaign, status: "messages_enqueued"),
                .init(id: "mixed", campaignId: campaign, status: "messages_enqueued")
            ]
            for i in data.rows.indices {
                let batch = i < members ? "incident" : "mixed"
                data.rows[i].batchId = batch
                data.rows[i].errorCode = "routing_error"
                data.rows[i].kind = .retrySucceeds
                data.simulator.messages[i].batchId = batch
                data.simulator.messages[i].outcomes = ["success"]
            }
            data.rows[members].isOtp = true  // must not be retried: the `mixed` batch never goes whole
            data.rows[members].kind = .otp
        }
    }

    static func batchCalls(_ ledger: SimulatorLedger, _ batch: String) -> Int {
        ledger.requests.filter { $0.method == "POST" && $0.path.hasSuffix("/batch/\(batch)/retry") }.count
    }

    @Test func aBatchWhoseRetryableMembersAreAllSelectedGoesInOneCall() async throws {
        let members = 40
        let fixture = try await Self.incident(members: members)
        let result = try await fixture.run(fixture.settings(pollTimeout: .seconds(20)))
        #expect(result.exitStatus == .completed, "\(result.message ?? "")")
        let ledger = await fixture.sim.ledger()
        #expect(Self.batchCalls(ledger, "incident") == 1)
        #expect(Self.batchCalls(ledger, "mixed") == 0, "a batch with an OTP member is never retried whole")
        let otp = fixture.data.rows[members].messageId
        #expect(ledger.acceptedRetries[otp] == nil, "the OTP was retried")
        let singles = ledger.requests.filter { $0.method == "POST" && $0.path.contains("/messages/") }.count
        #expect(singles == 5, "the mixed batch's five other members go by single retries")
        #expect(result.summary.apiCalls.batchRetry == 1 && result.summary.apiCalls.retry == 5)
        #expect(result.summary.counts.retried == members + 5 && result.summary.counts.succeeded == members + 5)
        #expect(result.summary.batchCalls?.count == 1 && result.summary.batchCalls?.first?.members == members)
        _ = try await Reliability.checkConverged(fixture)
        // Far fewer requests than one retry per member: the batch call, the pages, the reads that settle it.
        #expect(ledger.requests.count < members / 2 + 15, "\(ledger.requests.count) requests")
        await fixture.stop()
    }

    /// `plan` names the batch that may go whole, its members and the calls saved, and not the mixed one.
    @Test func planShowsWhichBatchesMayGoWhole() async throws {
        let fixture = try await Self.incident(members: 30)
        let plan = try await Plan.compute(db: fixture.db, settings: fixture.settings())
        let campaign = try #require(plan.campaigns.first)
        #expect(campaign.wholeBatches.map(\.batchId) == ["incident"])
        #expect(campaign.wholeBatches.first?.members == 30 && campaign.wholeBatches.first?.callsSaved == 29)
        #expect(plan.text.contains("batch incident may go whole: 30 members in one call"))
        var off = fixture.settings()
        off.wholeBatchRetries = false
        #expect(try await Plan.compute(db: fixture.db, settings: off).campaigns.first?.wholeBatches.isEmpty == true)
        await fixture.stop()
    }

    /// Every campaign's batches are counted in one statement: two campaigns with a batch of the same id are
    /// still told apart (the second one's batch has an OTP member, so only the first may go whole).
    @Test func planCountsTheSameBatchIdOfTwoCampaignsApart() async throws {
        let fixture = try await EngineFixture.make(campaigns: 2, messages: 6, mixed: false, seed: 72) { data in
            for i in data.rows.indices {
                data.rows[i].batchId = "incident"
                data.rows[i].errorCode = "routing_error"
                data.rows[i].kind = .retrySucceeds
            }
            let second = data.simulator.campaigns[1].id
            let otp = data.rows.lastIndex { $0.campaignId == second }!
            data.rows[otp].isOtp = true
            data.rows[otp].kind = .otp
        }
        let plan = try await Plan.compute(db: fixture.db, settings: fixture.settings())
        let byCampaign = Dictionary(uniqueKeysWithValues: plan.campaigns.map { ($0.campaignId, $0.wholeBatches) })
        let first = fixture.data.simulator.campaigns[0].id
        let second = fixture.data.simulator.campaigns[1].id
        #expect(byCampaign[first]?.map(\.batchId) == ["incident"])
        #expect(byCampaign[first]?.first?.members == 6)
        #expect(byCampaign[second]?.isEmpty == true, "\(byCampaign)")
        await fixture.stop()
    }

    @Test func wholeBatchRetriesCanBeTurnedOff() async throws {
        let fixture = try await Self.incident(members: 12)
        var settings = fixture.settings(pollTimeout: .seconds(20))
        settings.wholeBatchRetries = false
        let result = try await fixture.run(settings)
        let ledger = await fixture.sim.ledger()
        #expect(Self.batchCalls(ledger, "incident") == 0)
        #expect(result.summary.apiCalls.retry == 17 && result.summary.apiCalls.batchRetry == 0)
        _ = try await Reliability.checkConverged(fixture)
        await fixture.stop()
    }

    /// An incident bigger than one list page: one batch call, then its members are read back by the pages
    /// (a remembered list cursor once made every sweep start at the last page, and 2,000 members were read
    /// one by one).
    @Test func aBatchOfSeveralPagesIsSettledByPagesNotSingleReads() async throws {
        let members = 2_100
        let fixture = try await Self.incident(members: members)
        let result = try await fixture.run(fixture.settings(pollTimeout: .seconds(30)))
        #expect(result.exitStatus == .completed)
        let ledger = await fixture.sim.ledger()
        #expect(Self.batchCalls(ledger, "incident") == 1)
        #expect(result.summary.counts.succeeded == members + 5)
        #expect(ledger.requests.count < 80, "\(ledger.requests.count) requests for one batch call")
        await fixture.stop()
    }

    /// The binary's `--no-whole-batch` turns whole-batch retries off.
    @Test func theFlagTurnsWholeBatchRetriesOff() async throws {
        let fixture = try await Self.incident(members: 6)
        let exit = try await CrashResumeTests.runBinaryWith(fixture, arguments: ["--no-whole-batch"])
        #expect(exit.status == 0, "\(exit.stderr)")
        let ledger = await fixture.sim.ledger()
        #expect(Self.batchCalls(ledger, "incident") == 0)
        #expect(ledger.acceptedRetries.count == 11)
        await fixture.stop()
    }

    /// The batch call's answer is lost after Postman acted (500 after accept): each member is settled by
    /// reading it, none is retried twice, and the batch is never called whole again, in this run or the next.
    @Test func aLostBatchAnswerIsSettledByReadingTheMembers() async throws {
        var options = SimulatorOptions()
        options.seed = 72
        options.timeScale = 20
        options.faults.error5xxAfterAccept = 1
        let fixture = try await Self.incident(members: 10, options: options)
        let result = try await fixture.run(fixture.settings(pollTimeout: .seconds(20)))
        #expect(result.exitStatus == .completed)
        let ledger = await fixture.sim.ledger()
        #expect(Self.batchCalls(ledger, "incident") == 1)
        #expect(ledger.acceptedRetries.values.allSatisfy { $0 == 1 })
        #expect(result.summary.counts.retried == 15)
        _ = try await Reliability.checkConverged(fixture)
        await fixture.stop()
    }

    /// An uninterrupted run of the binary on an `incident` of 20 members, then the same data killed at `point`
    /// and run again: the second world (to inspect, and stop) and the rows whose final state differs.
    static func killedAndRerun(point: String, options: SimulatorOptions? = nil, pollTimeout: String) async throws -> (
        EngineWorld, mismatches: [String]
    ) {
        let reference = try await Self.incident(members: 20, options: options)
        let clean = try await CrashResumeTests.runBinary(reference, pollTimeout: pollTimeout)
        #expect(clean.status == 0, "\(clean.stderr)")
        let want = CrashResumeTests.comparable(try await reference.table(), reference)
        #expect(Self.batchCalls(await reference.sim.ledger(), "incident") == 1)
        await reference.stop()

        let fixture = try await Self.incident(members: 20, options: options)
        let crashed = try await CrashResumeTests.runBinary(
            fixture, ["POSTMAN_RETRY_CRASH_AT": point, "POSTMAN_RETRY_TEST_HOOKS": "I_AM_A_TEST"], pollTimeout: pollTimeout)
        #expect(crashed.killed, "the crash point \(point) was not reached: \(crashed.stderr)")
        let resumed = try await CrashResumeTests.runBinary(fixture, pollTimeout: pollTimeout)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let got = CrashResumeTests.comparable(try await fixture.table(), fixture)
        return (fixture, want.keys.sorted().filter { got[$0] != want[$0] }.map { "\($0): \(got[$0] ?? "-") != \(want[$0]!)" })
    }

    /// The real binary killed at every step of a whole-batch retry (after the batch intent, before the call,
    /// after Postman accepted it), then run again: the same final table as an uninterrupted run, no member
    /// retried twice, and never a second batch call.
    @Test(arguments: ["after-batch-intent:1", "before-batch-call:1", "after-batch-call:1"])
    func killedDuringAWholeBatchRetryThenRerunConverges(point: String) async throws {
        let (fixture, mismatches) = try await Self.killedAndRerun(point: point, pollTimeout: "20s")
        #expect(mismatches.isEmpty, "\(mismatches.prefix(5))")
        let ledger = await fixture.sim.ledger()
        #expect(ledger.acceptedRetries.values.allSatisfy { $0 == 1 }, "a member was retried twice")
        #expect(Self.batchCalls(ledger, "incident") <= 1, "a second batch call")
        _ = try await Reliability.checkConverged(fixture)
        await fixture.stop()
    }

    /// Killed right after Postman answered the batch call 201, where Postman carries the batch retry out 12 s
    /// later (`batchRetryDelay`): the rerun restores the members as intents whose call may have landed, reads
    /// them (no new attempt yet, the batch `messages_enqueuing`) and waits for the batch, as the run that was
    /// not killed does. Without the call's time restored, every member ended `batch_not_retryable`, unwritten.
    @Test func killedAfterABatchCallThatPostmanCarriesOutLaterThenRerunConverges() async throws {
        var options = SimulatorOptions()
        options.seed = 71
        options.batchRetryDelay = 12
        let (fixture, mismatches) = try await Self.killedAndRerun(
            point: "after-batch-call:1", options: options, pollTimeout: "40s")
        #expect(mismatches.isEmpty, "\(mismatches.count) rows differ: \(mismatches.prefix(5))")
        let ledger = await fixture.sim.ledger()
        // The 20 of `incident` by its one call, the 5 retryable rows of `mixed` (never whole: an OTP member) singly.
        #expect(ledger.acceptedRetries.count == 25 && ledger.acceptedRetries.values.allSatisfy { $0 == 1 })
        #expect(Self.batchCalls(ledger, "incident") == 1, "a second batch call")
        let members = Set(fixture.data.rows.filter { $0.batchId == "incident" }.map(\.messageId))
        let singles = ledger.requests.filter { request in
            request.method == "POST" && members.contains { request.path.hasSuffix("/messages/\($0)/retry") }
        }
        #expect(singles.isEmpty, "single retries of members of the called batch: \(singles.map(\.path))")
        let summary = try await Reliability.checkConverged(fixture)
        #expect(summary.counts.retried == 25 && summary.counts.batchNotRetryable == 0, "\(summary.counts)")
        await fixture.stop()
    }
}
