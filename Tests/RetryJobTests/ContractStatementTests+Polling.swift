import EngineTestSupport
import Foundation
import LibPQ
import PostmanSimulator
import RetryJob
import RetryJournal
import RetrySettings
import SampleData
import Testing

/// CONTRACT.md section 4, the 48-hour rule, and section 3, a status the job does not know.
extension ContractStatementTests {
    /// Two campaigns, one failed message each (no batch), whose retry never reaches a final status.
    static func stuckMessagePerCampaign(_ prefix: String, seed: UInt64) async throws -> EngineFixture {
        var options = SimulatorOptions()
        options.seed = seed
        options.timeScale = 1
        return try await EngineFixture.make(databasePrefix: prefix, campaigns: 2, messages: 1, mixed: false, options: options) {
            data in
            for i in data.rows.indices { data.rows[i].batchId = nil }
            for i in data.simulator.messages.indices {
                data.simulator.messages[i].batchId = nil
                data.simulator.messages[i].outcomes = ["stuck"]
            }
        }
    }

    /// Moves run `run` (its record) and its journal entries of `messages` `hours` into the past: as if that
    /// run had retried those messages `hours` ago.
    static func age(_ fixture: EngineFixture, run: Int64, messages: [String], hours: Int) async throws {
        try await fixture.db.execute(
            """
            UPDATE postman_retry.runs SET started_at = started_at - make_interval(hours => \(hours)),
                   finished_at = finished_at - make_interval(hours => \(hours))
            WHERE run_id = \(run)
            """)
        let aged = try await fixture.db.query(
            """
            UPDATE postman_retry.journal SET intent_at = intent_at - make_interval(hours => \(hours)),
                   accepted_at = accepted_at - make_interval(hours => \(hours)),
                   poll_deadline = poll_deadline - make_interval(hours => \(hours)),
                   final_at = final_at - make_interval(hours => \(hours)),
                   written_at = written_at - make_interval(hours => \(hours))
            WHERE run_id = \(run) AND message_id = ANY(\(messages)::text[])
            RETURNING message_id
            """)
        #expect(aged.count == messages.count, "journal entries aged: \(aged.count) of \(messages.count)")
    }

    /// Requests the simulator saw after the first `after` of its ledger, for `campaign`.
    static func requests(_ fixture: EngineFixture, after: Int, campaign: String) async -> [SimulatorLedger.Request] {
        await fixture.sim.ledger().requests.dropFirst(after).filter { $0.campaignId == campaign }
    }

    /// Section 4: "A message still not final 48 hours after its retry keeps its last status and is no longer
    /// polled (the report lists it as never final)." Run 1 retries one message per campaign; neither ever
    /// becomes final, both are left pending. The retry of campaign-1's message is then made 49 hours old (the
    /// run that made it too). Run 2 must not poll it (nothing at all goes to campaign-1), must leave its row
    /// as run 1 wrote it, and its report must list it as never final; campaign-2's message, retried seconds
    /// ago, is the control: carried over and polled as usual, and not listed.
    @Test func aRetryNotFinalAfter48HoursIsNoLongerPolledKeepsItsStatusAndIsReportedNeverFinal() async throws {
        let fixture = try await Self.stuckMessagePerCampaign("never_final", seed: 71)
        let aged = fixture.data.rows.first { $0.campaignId == "campaign-1" }!.messageId
        let control = fixture.data.rows.first { $0.campaignId == "campaign-2" }!.messageId
        let first = try await fixture.run(fixture.settings(pollTimeout: .seconds(2)))
        #expect(first.exitStatus == .completed, "\(first.message ?? "")")
        #expect(first.summary.counts.retried == 2 && first.summary.counts.pending == 2, "\(first.summary.counts)")
        let afterFirst = try await fixture.table()
        #expect(afterFirst[aged]?.retryCount == 1 && afterFirst[aged]?.status != "failure", "\(afterFirst)")
        let storedAfterFirst = try await Self.storedRow(fixture, aged)

        try await Self.age(fixture, run: first.runId, messages: [aged], hours: 49)
        let ledgerBefore = await fixture.sim.ledger().requests.count
        let second = try await fixture.run(fixture.settings(pollTimeout: .seconds(2)))
        #expect(second.exitStatus == .completed, "\(second.message ?? "")")

        // No longer polled: not a single request to its campaign (it has no other work), none naming it.
        let toAgedCampaign = await Self.requests(fixture, after: ledgerBefore, campaign: "campaign-1")
        #expect(toAgedCampaign.isEmpty, "run 2 still polled the 49-hour-old retry: \(toAgedCampaign.map(\.path))")
        #expect(!(await Self.requests(fixture, after: ledgerBefore, campaign: "campaign-2")).isEmpty, "the control was polled")
        #expect(second.summary.counts.carriedOver == 1, "only the control is carried over: \(second.summary.counts)")
        // Keeps its last status: the row is exactly as run 1 left it (not even rewritten with the same values).
        #expect(try await Self.storedRow(fixture, aged) == storedAfterFirst)
        let entries: [(run: Int64, neverFinal: Bool)] = try await fixture.db.query(
            "SELECT run_id, never_final FROM postman_retry.journal WHERE message_id = \(aged) ORDER BY run_id"
        ).map { (try $0.decode("run_id"), try $0.decode("never_final")) }
        #expect(entries.map(\.run) == [first.runId] && entries.first?.neverFinal == true, "\(entries)")

        // The report of run 2 lists it as never final, with its last status; not the control.
        let report = try await Self.report(fixture, runId: second.runId)
        let neverFinal = report.failures("never_final")
        #expect(neverFinal.map { $0["message_id"] } == [aged], "never_final rows: \(neverFinal)")
        #expect(neverFinal.first?["detail"]?.contains(afterFirst[aged]!.status) == true, "\(neverFinal)")
        let byCategory = report.json["needs_attention_by_category"] as? [String: Int] ?? [:]
        #expect(byCategory["never_final"] == 1, "summary.json: \(byCategory)")
        #expect(!report.failures.contains { $0["message_id"] == control }, "the control is listed: \(report.failures)")
        await fixture.stop()
    }

    /// The same rule where runs of one campaign (`--campaign`) run between runs of all campaigns, as an agency
    /// with a schedule per campaign has them. Run 1 (all campaigns) leaves both messages pending, and is then
    /// made 49 hours old. Run 2 is `--campaign campaign-2`: it stops polling campaign-2's message and lists it.
    /// Run 3 (all campaigns) stops polling campaign-1's message, so run 3's report must list that one.
    @Test func aRetryRetiredAfterARunOfOneCampaignIsInTheReportOfTheRunThatRetiredIt() async throws {
        let fixture = try await Self.stuckMessagePerCampaign("never_final_scoped", seed: 72)
        let one = fixture.data.rows.first { $0.campaignId == "campaign-1" }!.messageId
        let two = fixture.data.rows.first { $0.campaignId == "campaign-2" }!.messageId
        let first = try await fixture.run(fixture.settings(pollTimeout: .seconds(2)))
        #expect(first.summary.counts.pending == 2, "\(first.summary.counts)")
        let storedOne = try await Self.storedRow(fixture, one)
        try await Self.age(fixture, run: first.runId, messages: [one, two], hours: 49)

        var onlyTwo = fixture.settings(pollTimeout: .seconds(2))
        onlyTwo.scope.campaigns = ["campaign-2"]
        let second = try await fixture.run(onlyTwo)
        #expect(second.exitStatus == .completed, "\(second.message ?? "")")
        let secondReport = try await Self.report(fixture, runId: second.runId)
        #expect(secondReport.failures("never_final").map { $0["message_id"] } == [two], "\(secondReport.failures)")

        let ledgerBefore = await fixture.sim.ledger().requests.count
        let third = try await fixture.run(fixture.settings(pollTimeout: .seconds(2)))
        #expect(third.exitStatus == .completed, "\(third.message ?? "")")
        #expect(await Self.requests(fixture, after: ledgerBefore, campaign: "campaign-1").isEmpty, "run 3 polled it")
        #expect(try await Self.storedRow(fixture, one) == storedOne)
        let neverFinal: Bool = try await fixture.db.query(
            "SELECT never_final FROM postman_retry.journal WHERE run_id = \(first.runId) AND message_id = \(one)")[0].decode(
                "never_final")
        #expect(neverFinal, "run 3 stopped polling it")

        let thirdReport = try await Self.report(fixture, runId: third.runId)
        // The report used to take as "stopped by this run" only retries older than 48 hours before the
        // previous run of any scope started, so after run 2 (campaign-2 only) no report ever named this one;
        // the journal now records the run that retired it (V009).
        #expect(
            thirdReport.failures("never_final").map { $0["message_id"] } == [one],
            "run 3 stopped polling \(one) but its report lists as never final: \(thirdReport.failures("never_final"))")
        await fixture.stop()
    }

    /// Section 3: a status the job does not know (`queued_somewhere`) is in flight, "named in the log and the
    /// report". The binary retries one message; once Postman accepted the retry, Postman shows the message in
    /// `queued_somewhere` (the simulator is loaded with that state). The run must keep it in flight until its
    /// deadline (pending, its row in `queued_somewhere`, retry counted), log a line naming the status and the
    /// message, and list both in its report; the next run carries it over and polls it again.
    @Test func anUnknownStatusIsInFlightAndNamedInTheLogAndTheReport() async throws {
        var options = SimulatorOptions()
        options.seed = 73
        options.timeScale = 1
        let fixture = try await EngineFixture.make(
            databasePrefix: "unknown_status", campaigns: 1, messages: 1, mixed: false, options: options
        ) { data in
            data.rows[0].batchId = nil
            data.simulator.messages[0].batchId = nil
            data.simulator.messages[0].outcomes = ["stuck"]
        }
        let id = fixture.data.rows[0].messageId
        let reportDirectory = Self.temporaryPath("unknown-status-report")
        defer { try? FileManager.default.removeItem(atPath: reportDirectory) }
        let (process, errors) = try CrashResumeTests.launch(
            fixture, [:], arguments: ["--report-dir", reportDirectory], logLevel: "warning", pollTimeout: "4s")
        let accepted = try await WorkerTests.eventually(timeout: .seconds(15)) {
            await fixture.sim.ledger().acceptedRetries[id] == 1
        }
        #expect(accepted, "the retry was not accepted")
        // Postman now shows the retried message (two attempts) in a status the job does not know.
        var changed = fixture.data.simulator
        let original = changed.messages[0]
        changed.messages[0].latestStatus = "queued_somewhere"
        changed.messages[0].retries = original.retries + 1
        changed.messages[0].attempts =
            [.init(status: "queued_somewhere", createdAt: ISO8601DateFormatter().string(from: Date()))] + original.attempts
        changed.messages[0].outcomes = nil
        await fixture.sim.load(changed)
        let exit = await CrashResumeTests.wait(process, errors)
        #expect(exit.status == 0, "exit \(exit.status): \(exit.stderr.suffix(2000))")

        // In flight: the retry counts, the message is pending, its row shows the status last seen.
        let table = try await fixture.table()
        #expect(table[id] == .init(status: "queued_somewhere", retryCount: 1, errorCode: nil), "\(table[id]?.description ?? "-")")
        // Named in the log (JSON lines: stderr is not a terminal, as under a scheduler).
        let named = exit.stderr.split(separator: "\n").filter { $0.contains("queued_somewhere") }
        #expect(!named.isEmpty, "no log line names the status: \(exit.stderr.suffix(2000))")
        // With the message id (under `message_id`: the JSON handler's own `message` field used to overwrite it).
        #expect(named.contains { $0.contains("\"message_id\":\"\(id)\"") }, "no log line names the message: \(named)")
        // Named in the report the run wrote.
        let report = try Self.Report(directory: reportDirectory)
        let counts = report.counts
        #expect(counts["retried"] as? Int == 1 && counts["pending"] as? Int == 1, "\(counts)")
        #expect((counts["succeeded"] as? Int ?? 0) + (counts["failed"] as? Int ?? 0) == 0, "\(counts)")
        let unknown = report.json["unknown_statuses"] as? [[String: Any]] ?? []
        #expect(
            unknown.contains { $0["message_id"] as? String == id && $0["status"] as? String == "queued_somewhere" },
            "summary.json unknown_statuses: \(unknown)")
        #expect(report.html.contains("queued_somewhere"), "summary.html does not name the status")

        // Still in flight for the next run: carried over and polled again, not taken as final.
        let ledgerBefore = await fixture.sim.ledger().requests.count
        let next = try await fixture.run(fixture.settings(pollTimeout: .seconds(2)))
        #expect(next.summary.counts.carriedOver == 1, "\(next.summary.counts)")
        #expect(!(await Self.requests(fixture, after: ledgerBefore, campaign: "campaign-1")).isEmpty, "not polled again")
        #expect(try await fixture.table()[id]?.status == "queued_somewhere")
        await fixture.stop()
    }
}
