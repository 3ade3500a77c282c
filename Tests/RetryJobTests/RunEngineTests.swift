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

@Suite(.serialized) struct RunEngineTests {
    /// One campaign of `messages` plain failures against the simulator in real time (no time scale), each
    /// retry reaching `outcome` (a script such as "success@6": seconds after the retry).
    static func oneCampaignInRealTime(seed: UInt64, messages: Int, outcome: String) async throws -> EngineFixture {
        var options = SimulatorOptions()
        options.seed = seed
        options.timeScale = 1
        return try await EngineFixture.make(campaigns: 1, messages: messages, mixed: false, options: options) { data in
            for i in data.simulator.messages.indices { data.simulator.messages[i].outcomes = [outcome] }
        }
    }

    /// Starts a run by single retries (no whole-batch calls) and returns once Postman accepted `count` of them.
    static func singleRetriesUntilAccepted(_ fixture: EngineFixture, pollTimeout: Duration, count: Int) async throws
        -> Task<RunResult, any Error>
    {
        var settings = fixture.settings(pollTimeout: pollTimeout)
        settings.wholeBatchRetries = false
        let frozen = settings
        let run = Task { try await fixture.run(frozen) }
        let accepted = try await WorkerTests.eventually(timeout: .seconds(20)) {
            await fixture.sim.ledger().acceptedRetries.count == count
        }
        #expect(accepted)
        return run
    }

    /// Every selection case of CONTRACT.md sections 3 and 4 in one data set.
    @Test func finalTableMatchesTheContractForEveryCase() async throws {
        let fixture = try await EngineFixture.make()
        let before = try await fixture.table()
        // A deadline that a loaded machine cannot beat by holding up a poll (4 s once left rows at `created`
        // in a test of the same world, 2dfb8d8); the stuck rows make the run wait it out.
        let result = try await fixture.run(fixture.settings(pollTimeout: .seconds(8)))
        #expect(result.exitStatus == .completed)
        let after = try await fixture.table()
        for row in fixture.data.rows {
            let was = before[row.messageId]!
            let now = after[row.messageId]!
            switch row.kind {
            case .retrySucceeds:
                #expect(now == .init(status: "success", retryCount: 1, errorCode: nil), "\(row.messageId)")
            case .retryFailsAgain:
                #expect(now == .init(status: "failure", retryCount: 1, errorCode: "routing_error"), "\(row.messageId)")
            case .foreignSentToTelco:
                #expect(now == .init(status: "sent_to_telco", retryCount: 1, errorCode: nil), "\(row.messageId)")
            case .retryStuck:
                #expect(!["success", "failure"].contains(now.status) && now.retryCount == 1 && now.errorCode == nil)
            case .tableLagsPostman:
                // retry_count = max(row + 1, Postman's count after the retry) = max(2, 3)
                #expect(now == .init(status: "success", retryCount: 3, errorCode: nil), "\(row.messageId)")
            case .alreadyChangedInPostman:
                #expect(now == .init(status: "success", retryCount: 0, errorCode: nil), "\(row.messageId)")
            case .postmanAtLimit:
                #expect(now == .init(status: "failure", retryCount: 3, errorCode: was.errorCode), "\(row.messageId)")
            case .otp, .retryLimit, .permanentError, .unknownErrorCode, .malformedNegativeCount, .batchNotRetryable,
                .unknownToPostman, .stale, .notFailed:
                #expect(now == was, "\(row.kind) \(row.messageId) must not be written")
            }
        }
        let counts = result.summary.counts
        #expect(counts.addsUp)
        #expect(counts.exhausted == 2 && counts.notFound == 2 && counts.reconciled == 2 && counts.batchNotRetryable == 2)
        #expect(counts.pending == 2)
        #expect(counts.skippedByReason["otp"] == 2 && counts.skippedByReason["malformed"] == 2)
        let ledger = await fixture.sim.ledger()
        #expect(ledger.acceptedRetries.values.allSatisfy { $0 == 1 })
        #expect(ledger.rateLimited == 0)
        // What Postman already shows final, exhausted, unknown or blocked costs no retry call.
        let noCall = Set(
            fixture.data.rows.filter {
                [.alreadyChangedInPostman, .postmanAtLimit, .unknownToPostman, .batchNotRetryable].contains($0.kind)
            }.map(\.messageId))
        let retryPaths = ledger.requests.filter { $0.method == "POST" }.map(\.path)
        for id in noCall { #expect(!retryPaths.contains { $0.contains("/messages/\(id)/retry") }, "\(id) was sent a retry") }
        #expect(retryPaths.count == result.summary.counts.retried, "one retry call per retried message")
        #expect(ledger.maxRequestsIn1s.values.allSatisfy { $0 <= 10 })
        #expect(result.summary.apiCalls.retry + result.summary.apiCalls.poll == ledger.requests.count)
        await fixture.stop()
    }

    @Test func aSecondRunWhileOneHoldsTheLockExits75AndTouchesNothing() async throws {
        let fixture = try await EngineFixture.make(messages: 4)
        let holder = try await OtherRunHolder.start(url: fixture.url)
        do {
            _ = try await fixture.run(fixture.settings())
            Issue.record("the run should refuse while the lock is held")
        } catch let error as JobError {
            #expect(error.status == .temporary)
        }
        let runs: Int = try await fixture.db.execute("SELECT count(*) AS n FROM postman_retry.runs")[0].decode("n")
        #expect(runs == 0)
        #expect(await fixture.sim.ledger().requests.isEmpty)
        await holder.stop()
        await fixture.stop()
    }

    @Test func slowCampaignNextToFastOnesStaysInsideEachLimit() async throws {
        let fixture = try await EngineFixture.make(campaigns: 3, messages: 14, mixed: false)
        let result = try await fixture.run(fixture.settings(rateLimits: ["campaign-2": 2]))
        #expect(result.exitStatus == .completed, "\(result.message ?? "")")
        let ledger = await fixture.sim.ledger()
        #expect(ledger.rateLimited == 0, "no 429 may come from the job's own pacing")
        #expect((ledger.maxRequestsIn1s["campaign-2"] ?? 99) <= 2)
        #expect((ledger.maxRequestsIn1s["campaign-1"] ?? 99) <= 10)
        #expect(result.summary.counts.retried == 42)
        await fixture.stop()
    }

    /// The same on rows shaped like production: a table that lags Postman (rows someone else retried),
    /// rows Postman shows final or out of attempts, ids Postman does not know, blocked batches, skips of
    /// every kind; Postman itself holds campaign-2 to 2 requests a second beside the others' 10.
    @Test func slowCampaignNextToFastOnesOnProductionShapedRows() async throws {
        let fixture = try await EngineFixture.make(campaigns: 3, messages: 30, mixed: true, seed: 99, staleShare: 0.3) { data in
            if let slow = data.simulator.campaigns.firstIndex(where: { $0.id == "campaign-2" }) {
                data.simulator.campaigns[slow].rateLimit = 2
            }
        }
        let result = try await fixture.run(fixture.settings(pollTimeout: .seconds(20), rateLimits: ["campaign-2": 2]))
        #expect(result.exitStatus == .completed, "\(result.message ?? "")")
        // No 429, every campaign inside its own limit, no message retried twice, rows as Postman counts them.
        let summary = try await Reliability.checkConverged(fixture)
        Self.expectProductionShapedOutcome(summary, await fixture.sim.ledger())
        await fixture.stop()
    }

    /// What a run of production-shaped rows with campaign-2 held to 2 requests a second must show: counts
    /// that add up, campaign-2 inside its limit, one accepted retry per retried message, and every outcome
    /// kind of such rows present (else the data proves little).
    static func expectProductionShapedOutcome(
        _ summary: RunSummary, _ ledger: SimulatorLedger, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        ContractStatementTests.expectCountsAddUp(summary.counts, sourceLocation: sourceLocation)
        #expect((ledger.maxRequestsIn1s["campaign-2"] ?? 99) <= 2, sourceLocation: sourceLocation)
        #expect(summary.counts.retried == ledger.acceptedRetries.count, sourceLocation: sourceLocation)
        let counts = summary.counts
        #expect(
            counts.reconciled > 0 && counts.notFound > 0 && counts.batchNotRetryable > 0 && counts.exhausted > 0
                && counts.skipped > 0,
            "the rows are not production-shaped: \(counts)", sourceLocation: sourceLocation)
    }

    @Test func acceptThen500IsSettledByReadingBackNeverRetriedTwice() async throws {
        var options = SimulatorOptions()
        options.seed = 5
        options.timeScale = 20
        options.faults.error5xxAfterAccept = 0.4
        options.faults.error5xxBefore = 0.1
        let fixture = try await EngineFixture.make(messages: 16, mixed: false, options: options)
        // A generous poll deadline: with 50% of calls faulted, a loaded CI machine needed more than 4 s to read every
        // outcome back. The run ends as soon as all are final, so this costs nothing when the machine is quiet.
        let result = try await fixture.run(fixture.settings(pollTimeout: .seconds(30)))
        #expect(result.exitStatus == .completed)
        let ledger = await fixture.sim.ledger()
        #expect(ledger.acceptedRetries.count == 32)
        #expect(ledger.acceptedRetries.values.allSatisfy { $0 == 1 })
        let table = try await fixture.table()
        let unsettled = table.filter { !($0.value.retryCount == 1 && ["success", "failure"].contains($0.value.status)) }
        #expect(unsettled.isEmpty, "rows not settled with one retry: \(unsettled)")
        #expect(result.summary.counts.retried == 32 && result.summary.counts.addsUp)
        await fixture.stop()
    }

    @Test func refusedKeyStopsTheRunWith77AndTheNextRunResumes() async throws {
        let fixture = try await EngineFixture.make(messages: 10, mixed: false)
        var keys = fixture.keysEnvironment
        keys[apiKeyVariableName(campaignId: "campaign-2")] = "wrong-key"
        // campaign-1 at 2/s: its ten retries span 5 s, so a run that went on would show them; a retry handed
        // to the HTTP client just before the stop reached it may still arrive (0.3 s at 10/s was too tight
        // for a loaded machine).
        let first = try await fixture.run(fixture.settings(rateLimits: ["campaign-1": 2], keys: keys))
        #expect(first.exitStatus == .noPermission)
        let ledger = await fixture.sim.ledger()
        let refusedAt = ledger.requests.first { $0.status == 401 }?.t ?? 0
        let lateRetries = ledger.requests.filter { $0.method == "POST" && $0.t > refusedAt + 0.6 }
        #expect(lateRetries.isEmpty, "nothing more is sent after the refusal")

        let second = try await fixture.run(fixture.settings())
        #expect(second.exitStatus == .completed)
        #expect(second.runId == first.runId, "the interrupted run is resumed, not replaced")
        #expect(second.summary.counts.retried == 20 && second.summary.counts.addsUp)
        #expect(await fixture.sim.ledger().acceptedRetries.values.allSatisfy { $0 == 1 })
        await fixture.stop()
    }

    /// CONTRACT.md sections 2 and 4: write-back never overwrites a row that changed since the job read it,
    /// whichever column the job relies on changed: the recipient, the OTP flag or the batch here, none of
    /// which moves `updated_at` (only status, retry count, error and `updated_at` were compared before).
    @Test func writeBackLeavesARowWhoseRecipientOtpFlagOrBatchChanged() async throws {
        let fixture = try await Self.oneCampaignInRealTime(seed: 5, messages: 4, outcome: "success@3")
        let ids = fixture.data.rows.map(\.messageId)
        let run = try await Self.singleRetriesUntilAccepted(fixture, pollTimeout: .seconds(20), count: 4)
        let writer = try await PGConnection.connect(PGConfiguration(url: fixture.url), logger: EngineFixture.quietLogger)
        try await writer.execute("UPDATE outbound_messages SET recipient = '6591234567' WHERE message_id = \(ids[0])")
        try await writer.execute("UPDATE outbound_messages SET is_otp = true WHERE message_id = \(ids[1])")
        try await writer.execute("UPDATE outbound_messages SET batch_id = 'moved-batch' WHERE message_id = \(ids[2])")
        let result = try await run.value
        await writer.close()
        let table = try await fixture.table()
        for id in ids.prefix(3) {
            #expect(table[id] == .init(status: "failure", retryCount: 0, errorCode: table[id]?.errorCode), "\(id): \(table[id]!)")
        }
        #expect(table[ids[3]]?.status == "success" && table[ids[3]]?.retryCount == 1)
        #expect(result.summary.writeConflicts == 3, "\(result.summary)")
        #expect(result.summary.counts.retried == 4 && result.summary.counts.addsUp)
        await fixture.stop()
    }

    /// The agency table allows only the statuses it knows (a CHECK, as many agency schemas have), and Postman
    /// shows one selected message in a status the job does not know: its row is reconciled to it, and the
    /// table refuses the write. That row alone is left as it is (`write_state = 'refused'`, PostgreSQL's
    /// message kept for the report); the others are written and the run completes. The one refusal used
    /// to roll back the whole flush and stop every run with exit 1, nothing written (found by review).
    @Test func aWriteTheTableRefusesLeavesThatRowAloneAndTheRunCompletes() async throws {
        let fixture = try await EngineFixture.make(databasePrefix: "refused", campaigns: 1, messages: 8, mixed: false, seed: 83) {
            data in
            for i in data.rows.indices {
                data.rows[i].batchId = nil
                data.rows[i].errorCode = "routing_error"
                data.rows[i].kind = .retrySucceeds
                data.simulator.messages[i].batchId = nil
                data.simulator.messages[i].outcomes = ["success"]
            }
            // Unknown to the job: their rows follow Postman, and the table refuses the status.
            data.simulator.messages[0].latestStatus = "queued"
            data.simulator.messages[5].latestStatus = "queued"
        }
        let refusedIds = [fixture.data.simulator.messages[0].id, fixture.data.simulator.messages[5].id]
        try await fixture.db.execute(
            """
            ALTER TABLE outbound_messages ADD CONSTRAINT known_status
            CHECK (status IN ('created', 'enqueued', 'sending', 'sent', 'sent_to_telco', 'success', 'failure'))
            """)
        let result = try await fixture.run(fixture.settings(pollTimeout: .seconds(10)))
        let table = try await fixture.table()
        #expect(result.exitStatus == .completed, "\(result.message ?? "")")
        for id in refusedIds {
            #expect(table[id]?.status == "failure" && table[id]?.retryCount == 0, "\(id): \(table[id]!)")
            let entry = try await fixture.db.query(
                "SELECT write_state, write_error FROM postman_retry.journal WHERE message_id = \(id)")[0]
            #expect(try entry.decode("write_state", as: String.self) == "refused")
            #expect(try entry.optional("write_error", as: String.self)?.contains("known_status") == true)
        }
        #expect(table.filter { !refusedIds.contains($0.key) }.values.allSatisfy { $0.status == "success" && $0.retryCount == 1 })
        #expect(result.summary.counts.addsUp && result.summary.counts.selected == 8, "\(result.summary.counts)")
        await fixture.stop()
    }

    @Test func anApplicationWritingDuringTheRunLosesNoWrite() async throws {
        var options = SimulatorOptions()
        options.seed = 3
        options.timeScale = 1
        let fixture = try await EngineFixture.make(campaigns: 1, messages: 10, mixed: false, options: options) { data in
            // the first message takes 4 s to reach its outcome, so the application's write lands first
            data.simulator.messages[0].outcomes = ["success@4"]
            for i in 1..<data.simulator.messages.count { data.simulator.messages[i].outcomes = ["success@0.1"] }
        }
        let first = fixture.data.rows[0].messageId
        let last = fixture.data.rows[9].messageId
        let writer = try await PGConnection.connect(PGConfiguration(url: fixture.url), logger: EngineFixture.quietLogger)
        // Single retries, one after the other at 2/s, so the last row's intent comes after the application's
        // write (a whole-batch call would take the batch's members, first and last among them, at once).
        var settings = fixture.settings(pollTimeout: .seconds(20), rateLimits: ["campaign-1": 2])
        settings.wholeBatchRetries = false
        let run = Task { try await fixture.run(settings) }
        // Once the first row's retry is accepted (its check is behind it; its outcome 4 s away, the last row's
        // intent about 4.5 s at 2/s): a fixed sleep could land before the first check on a loaded machine.
        #expect(
            try await WorkerTests.eventually(timeout: .seconds(30)) { await fixture.sim.ledger().acceptedRetries[first] != nil })
        try await writer.execute(
            "UPDATE outbound_messages SET error_code = 'set_by_app', updated_at = now() WHERE message_id IN (\(first), \(last))")
        let result = try await run.value
        let table = try await fixture.table()
        #expect(table[first]?.errorCode == "set_by_app", "write-back must not overwrite the application's change")
        #expect(table[last]?.errorCode == "set_by_app")
        #expect(table[last]?.retryCount == 0)
        #expect(result.summary.counts.conflict == 1, "the changed row is not retried")
        #expect(result.summary.writeConflicts == 1)
        #expect(result.summary.counts.succeeded == 9 && result.summary.counts.addsUp)
        #expect(await fixture.sim.ledger().acceptedRetries[last] == nil)
        await writer.close()
        await fixture.stop()
    }

    /// CONTRACT.md section 4: a carried-over message gets "a fresh deadline of `--poll-timeout` from that
    /// run's start". Its outcome comes 14 s after its retry; the second run's deadline (3 s) passes before
    /// that, so it stays pending. It used to be polled for at least 30 s and end `success`.
    @Test func aCarriedOverMessageIsPolledOnlyUntilTheNextRunsDeadline() async throws {
        let fixture = try await Self.oneCampaignInRealTime(seed: 12, messages: 2, outcome: "success@14")
        let first = try await fixture.run(fixture.settings(pollTimeout: .seconds(2)))
        #expect(first.summary.counts.pending == 2)
        let second = try await fixture.run(fixture.settings(pollTimeout: .seconds(3)))
        #expect(second.summary.counts.carriedOver == 2 && second.summary.counts.selected == 0)
        let rows = try await fixture.table()
        #expect(rows.values.allSatisfy { $0.status != "success" && $0.retryCount == 1 }, "\(rows)")
        let reads = await fixture.sim.ledger().requests.filter { $0.method == "GET" }
        #expect(!reads.isEmpty, "each carried-over message is looked at")
        await fixture.stop()
    }

    /// `plan` says what `run` would carry over: a pending retry whose write-back met a row the agency changed
    /// is not carried over by `run` (its row is the agency's now), so `plan` does not count it either (it
    /// said 3 where the run carried 2; found by a contract audit).
    @Test func planCountsAsCarriedOverWhatTheRunCarriesOver() async throws {
        let fixture = try await Self.oneCampaignInRealTime(seed: 13, messages: 3, outcome: "success@30")
        let changed = fixture.data.rows[0].messageId
        var settings = fixture.settings(pollTimeout: .seconds(3))
        settings.wholeBatchRetries = false
        let run = try await Self.singleRetriesUntilAccepted(fixture, pollTimeout: .seconds(3), count: 3)
        try await fixture.db.execute("UPDATE outbound_messages SET updated_at = now() WHERE message_id = \(changed)")
        let first = try await run.value
        #expect(first.summary.counts.pending == 3 && first.summary.writeConflicts == 1, "\(first.summary)")
        let plan = try await Plan.compute(db: fixture.db, settings: settings)
        #expect(plan.carriedOver == 2, "\(plan.carriedOver)")
        let second = try await fixture.run(settings)
        #expect(second.summary.counts.carriedOver == plan.carriedOver)
        await fixture.stop()
    }

    @Test func pendingMessagesAreCarriedOverAndFinishedByTheNextRun() async throws {
        let fixture = try await Self.oneCampaignInRealTime(seed: 9, messages: 3, outcome: "success@6")
        let first = try await fixture.run(fixture.settings(pollTimeout: .seconds(2)))
        #expect(first.summary.counts.pending == 3)
        let pendingRows = try await fixture.table()
        #expect(pendingRows.values.allSatisfy { $0.retryCount == 1 && $0.status != "failure" && $0.errorCode == nil })
        try await Task.sleep(for: .seconds(5))
        let second = try await fixture.run(fixture.settings(pollTimeout: .seconds(10)))
        #expect(second.runId != first.runId)
        #expect(second.summary.counts.carriedOver == 3 && second.summary.counts.selected == 0)
        let final = try await fixture.table()
        #expect(
            final.values.allSatisfy { $0 == .init(status: "success", retryCount: 1, errorCode: nil) },
            "\(final) \(second.summary)")
        #expect(await fixture.sim.ledger().acceptedRetries.values.allSatisfy { $0 == 1 })
        await fixture.stop()
    }
}
