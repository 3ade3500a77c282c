import AsyncHTTPClient
import Foundation
import PostmanAPI
import PostmanSimulator
import Testing

@Suite("Batches and lists", .serialized)
struct BatchAndListTests {
    @Test("Batch retry: not retryable, unknown, unresolved, nothing to retry, and accepted")
    func batchRetryRules() async throws {
        var created = Fixture.failed("b_unresolved_created", batch: "b_unresolved")
        created.latestStatus = "created"
        var succeeded = Fixture.failed("b_done_ok", batch: "b_done")
        succeeded.latestStatus = "success"
        var delivered = Fixture.failed("b_mixed_ok", batch: "b_mixed")
        delivered.latestStatus = "success"
        let data = SimulatorData(
            campaigns: [Fixture.campaign("c1"), Fixture.campaign("c2")],
            batches: [
                .init(id: "b_processing", campaignId: "c1", status: "messages_processing"),
                .init(id: "b_unresolved", campaignId: "c1", status: "messages_enqueued"),
                .init(id: "b_done", campaignId: "c1", status: "messages_enqueued"),
                .init(id: "b_exhausted", campaignId: "c1", status: "messages_enqueued"),
                .init(id: "b_mixed", campaignId: "c1", status: "messages_enqueued"),
                .init(id: "b_other", campaignId: "c2", status: "messages_enqueued")
            ],
            messages: [
                Fixture.failed("b_processing_1", batch: "b_processing"),
                created, Fixture.failed("b_unresolved_failed", batch: "b_unresolved"),
                succeeded,
                Fixture.failed("b_exhausted_1", batch: "b_exhausted", retries: 3),
                delivered, Fixture.failed("b_mixed_f1", batch: "b_mixed"), Fixture.failed("b_mixed_f2", batch: "b_mixed"),
                Fixture.failed("b_mixed_spent", batch: "b_mixed", retries: 3),
                Fixture.failed("b_other_1", campaign: "c2", batch: "b_other")
            ])
        try await withSimulator(data) { server, client in
            func code(_ batch: String) async -> String? {
                await expectAPIError { try await client.retryBatch(campaignId: "c1", batchId: batch, apiKey: Fixture.key("c1")) }?
                    .code
            }
            #expect(await code("b_processing") == "batch_not_found_or_is_not_retryable")
            #expect(await code("no_such_batch") == "batch_not_found_or_is_not_retryable")
            #expect(await code("b_other") == "batch_not_found_or_is_not_retryable")  // another campaign's batch
            #expect(await code("b_unresolved") == "unresolved_batch_messages")
            #expect(await code("b_done") == "no_failed_batch_messages_to_retry")
            #expect(await code("b_exhausted") == "no_failed_batch_messages_to_retry")
            // Postman marks a batch with unresolved messages messages_enqueuing_failed.
            let member = try await client.getMessage(
                campaignId: "c1", messageId: "b_unresolved_failed", apiKey: Fixture.key("c1"))
            #expect(member.batches.first?.status == "messages_enqueuing_failed")

            try await client.retryBatch(campaignId: "c1", batchId: "b_mixed", apiKey: Fixture.key("c1"))
            #expect(await server.ledger().acceptedRetries == ["b_mixed_f1": 1, "b_mixed_f2": 1])
            let retried = try await client.getMessage(campaignId: "c1", messageId: "b_mixed_f1", apiKey: Fixture.key("c1"))
            #expect(retried.attemptCount == 2)
        }
    }

    @Test("Batch list items carry messageAttempts (flat errorType/errorCode) and numAttempts")
    func batchList() async throws {
        var m = Fixture.failed("m1", batch: "b1", code: "message_expired")
        m.attempts.append(.init(status: "failure", errorCode: "server_unknown_error", createdAt: "2026-11-21T19:00:00+08:00"))
        let data = SimulatorData(
            campaigns: [Fixture.campaign("c1")], batches: [.init(id: "b1", campaignId: "c1", status: "messages_enqueued")],
            messages: [m, Fixture.failed("single")])
        try await withSimulator(data) { server, client in
            let page = try await client.listBatchMessages(
                campaignId: "c1", batchId: "b1", limit: 10, after: nil, apiKey: Fixture.key("c1"))
            #expect(page.messages.map(\.id) == ["m1"])
            #expect(page.hasNextPage == false)
            let item = try #require(page.messages.first)
            #expect(item.numAttempts == 2)
            #expect(item.attemptCount == 2)
            #expect(item.newestErrorCode == "message_expired")  // the 20:00 attempt, not the 19:00 one
            #expect(item.attempts?.contains { $0.errorType == "server_error" && $0.errorCode == "server_unknown_error" } == true)
            let raw = try await rawRequest(
                server.baseURL + "/campaigns/c1/batch/b1/messages?limit=10", authorization: "Bearer \(Fixture.key("c1"))")
            #expect(raw.body.contains("\"messageAttempts\""))
            #expect(!raw.body.contains("\"attempts\""))
            let unknown = await expectAPIError {
                try await client.listBatchMessages(
                    campaignId: "c1", batchId: "nope", limit: 10, after: nil, apiKey: Fixture.key("c1"))
            }
            #expect(unknown?.kind == .http(status: 404))
        }
    }

    @Test("Paging 2,500 messages with limit 1000 returns each exactly once, in order, in 3 pages")
    func pagination() async throws {
        // Every three messages share a createdAt, so the id tie-break matters.
        let messages = (0..<2500).map { i -> SimulatorData.Message in
            let seconds = i / 3
            let stamp = String(
                format: "2026-11-20T%02d:%02d:%02d.%03d+08:00", seconds / 3600, (seconds / 60) % 60, seconds % 60, 0)
            return Fixture.failed(String(format: "message_%05d", (i * 7919) % 2500), at: stamp)
        }
        let data = SimulatorData(campaigns: [Fixture.campaign("c1"), Fixture.campaign("c2")], messages: messages)
        try await withSimulator(data) { server, client in
            var seen: [PostmanMessage] = []
            var after: String?
            var pages = 0
            var cursors: [String] = []
            repeat {
                let page = try await client.listCampaignMessages(
                    campaignId: "c1", limit: 1000, after: after, apiKey: Fixture.key("c1"))
                pages += 1
                seen += page.messages
                #expect(page.messages.allSatisfy { $0.attempts?.count == 1 })  // list items include attempts
                after = page.hasNextPage ? page.endCursor : nil
                if let after { cursors.append(after) }
            } while after != nil && pages < 10
            #expect(pages == 3)
            #expect(seen.count == 2500)
            #expect(Set(seen.map(\.id)).count == 2500)
            let keys = seen.map { ($0.createdAt!, $0.id) }
            #expect(zip(keys, keys.dropFirst()).allSatisfy { $0 < $1 })

            // `before` the second page's first item gives back the first page.
            let second = try await client.listCampaignMessages(
                campaignId: "c1", limit: 1000, after: cursors[0], apiKey: Fixture.key("c1"))
            #expect(second.hasPreviousPage)
            let start = try #require(second.startCursor)
            let back = try await rawRequest(
                server.baseURL + "/campaigns/c1/messages?limit=1000&before=\(PathSegment.encode(start))",
                authorization: "Bearer \(Fixture.key("c1"))")
            let backIds = try #require(jsonObject(back.body)?["data"] as? [[String: Any]]).compactMap { $0["id"] as? String }
            #expect(backIds == seen.prefix(1000).map(\.id))

            let empty = try await client.listCampaignMessages(
                campaignId: "c2", limit: 1000, after: nil, apiKey: Fixture.key("c2"))
            #expect(empty.messages.isEmpty && !empty.hasNextPage)
        }
    }

    @Test(
        "limit outside 1...1000 and bad cursors get 400 parameter_invalid",
        arguments: ["limit=0", "limit=1001", "limit=abc", "limit=10&after=notbase64!!", "limit=10&before=WyJ4Il0="])
    func badListParameters(query: String) async throws {
        let data = SimulatorData(campaigns: [Fixture.campaign("c1")], messages: [Fixture.failed("m1")])
        try await withSimulator(data) { server, _ in
            let raw = try await rawRequest(
                server.baseURL + "/campaigns/c1/messages?\(query)", authorization: "Bearer \(Fixture.key("c1"))")
            #expect(raw.status == 400)
            #expect((jsonObject(raw.body)?["error"] as? [String: Any])?["code"] as? String == "parameter_invalid")
        }
    }

    @Test("search filters by a recipient substring")
    func search() async throws {
        let data = SimulatorData(
            campaigns: [Fixture.campaign("c1")],
            messages: [Fixture.failed("m1", recipient: "6591122233"), Fixture.failed("m2", recipient: "6598765432")])
        try await withSimulator(data) { server, _ in
            let raw = try await rawRequest(
                server.baseURL + "/campaigns/c1/messages?limit=10&search=11", authorization: "Bearer \(Fixture.key("c1"))")
            let ids = (jsonObject(raw.body)?["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String }
            #expect(ids == ["m1"])
        }
    }
}
