import EngineTestSupport
import Foundation
import LibPQ
import PostmanSimulator
import RetryJob
import RetryJournal
import RetrySettings
import SampleData
import Testing

/// CONTRACT.md section 4, `rejected`: "any other 4xx except 401/403/429: not written; the report lists the
/// row with Postman's code and message".
///
/// The simulator has no way to answer a retry with another 4xx: its fault injection (`FaultOptions`) gives
/// 503s, 500 after an accepted retry, slow answers, dropped connections and cut JSON; its retry endpoint
/// answers only the three documented 400s, and its 404 `not_found` for an unroutable path cannot be reached
/// by an encoded id (ids that are not UTF-8 are `malformed` and never sent). So nginx stands in front of
/// the simulator and answers the retries of two messages itself; everything else reaches the simulator.
extension ContractStatementTests {
    struct Refusal {
        var messageId: String
        var status: Int
        var code: String
        var message: String
    }

    /// nginx on loopback in front of the simulator, answering each refusal's retry call itself.
    static func startRefusingFront(simulatorPort: Int, campaign: String, refusals: [Refusal]) async throws -> (
        process: Process, port: Int, directory: URL
    ) {
        let locations = refusals.map { refusal in
            let body =
                #"{"error":{"code":"\#(refusal.code)","message":"\#(refusal.message)","type":"invalid_request_error","id":"err_front"}}"#
            return """
                    location = /api/v2/campaigns/\(campaign)/messages/\(refusal.messageId)/retry {
                      default_type application/json;
                      return \(refusal.status) '\(body)';
                    }
                """
        }.joined(separator: "\n")
        return try await NetworkLab.startSimulatorFront(
            name: "refusing-front", simulatorPort: simulatorPort, locations: locations)
    }

    /// Two of six messages get a 4xx the contract does not name for their retry: 422, and a 400 with a code
    /// the job does not know. Each is sent once, counted `rejected`, its row left exactly as it was, and the
    /// report lists it with Postman's code and message; the others are retried; the counts add up.
    @Test func anUnnamed4xxLeavesTheRowUnwrittenCountsItRejectedAndReportsCodeAndMessage() async throws {
        let fixture = try await EngineFixture.make(databasePrefix: "rejected", campaigns: 1, messages: 6, mixed: false, seed: 74)
        let campaign = fixture.data.simulator.campaigns[0].id
        let ids = fixture.data.rows.map(\.messageId)
        let refusals = [
            Refusal(
                messageId: ids[1], status: 422, code: "unprocessable_message_sim", message: "Template values no longer valid"),
            Refusal(messageId: ids[4], status: 400, code: "campaign_paused_sim", message: "Campaign is paused by its owner")
        ]
        let front = try await Self.startRefusingFront(simulatorPort: fixture.sim.port, campaign: campaign, refusals: refusals)
        defer {
            NetworkLab.stop(front.process)
            try? FileManager.default.removeItem(at: front.directory)
        }
        var before: [String: String] = [:]
        for refusal in refusals { before[refusal.messageId] = try await Self.storedRow(fixture, refusal.messageId) }

        var settings = fixture.settings(pollTimeout: .seconds(10))
        settings.apiURL = "http://127.0.0.1:\(front.port)/api/v2"
        settings.wholeBatchRetries = false  // every message by its own retry call, so each refused call is one message's
        let result = try await fixture.run(settings)
        #expect(result.exitStatus == .completed, "\(result.message ?? "")")

        // Each refused retry call was sent once (nginx answered it), none reached the simulator.
        let accessLog =
            (try? String(contentsOf: front.directory.appendingPathComponent("nginx-access.log"), encoding: .utf8)) ?? ""
        let ledger = await fixture.sim.ledger()
        for refusal in refusals {
            let calls = accessLog.split(separator: "\n").filter {
                $0.contains("POST /api/v2/campaigns/\(campaign)/messages/\(refusal.messageId)/retry ")
            }
            #expect(
                calls.count == 1 && calls.allSatisfy { $0.contains("\" \(refusal.status) ") }, "\(refusal.messageId): \(calls)")
            #expect(ledger.acceptedRetries[refusal.messageId] == nil)
            // Not written: the row is exactly as it was, down to its tuple version.
            #expect(
                try await Self.storedRow(fixture, refusal.messageId) == before[refusal.messageId],
                "\(refusal.messageId) was written")
        }
        let counts = result.summary.counts
        #expect(counts.selected == 6 && counts.rejected == 2 && counts.retried == 4, "\(counts)")
        Self.expectCountsAddUp(counts)

        // The report lists each with Postman's code and message.
        let report = try await Self.report(fixture, runId: result.runId)
        let rejected = report.failures("rejected")
        #expect(rejected.count == 2, "\(report.failures)")
        for refusal in refusals {
            let row = rejected.first { $0["message_id"] == refusal.messageId }
            #expect(row?["code"] == refusal.code, "\(refusal.messageId): \(row ?? [:])")
            #expect(row?["detail"]?.contains(refusal.message) == true, "\(refusal.messageId): \(row ?? [:])")
            #expect(row?["written_back"] == "no", "\(refusal.messageId): \(row ?? [:])")
        }
        #expect(report.counts["rejected"] as? Int == 2)
        let byCode = report.json["rejected_by_code"] as? [String: Int] ?? [:]
        #expect(byCode == Dictionary(uniqueKeysWithValues: refusals.map { ($0.code, 1) }), "rejected_by_code: \(byCode)")
        await fixture.stop()
    }
}
