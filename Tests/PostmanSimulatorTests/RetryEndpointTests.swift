import AsyncHTTPClient
import Foundation
import PostmanAPI
import PostmanSimulator
import Testing

@Suite("Single message: GET and retry", .serialized)
struct RetryEndpointTests {
    @Test("GET returns the full message object, attempts newest first, +08:00 timestamps")
    func getMessage() async throws {
        var m = Fixture.failed("message_1", batch: "b1")
        m.attempts.append(
            .init(
                status: "failure", errorType: "server_error", errorCode: "server_unknown_error",
                createdAt: "2026-11-21T21:00:00.250+08:00"))
        let data = SimulatorData(
            campaigns: [Fixture.campaign("c1")], batches: [.init(id: "b1", campaignId: "c1", status: "messages_enqueued")],
            messages: [m])
        try await withSimulator(data) { server, client in
            let message = try await client.getMessage(campaignId: "c1", messageId: "message_1", apiKey: Fixture.key("c1"))
            #expect(message.id == "message_1")
            #expect(message.campaignId == "c1")
            #expect(message.recipient == "6591234567")
            #expect(message.latestStatus == "failure")
            #expect(message.attemptCount == 2)
            #expect(message.retriesUsed == 1)
            #expect(message.newestErrorCode == "server_unknown_error")
            #expect(message.attempts?.first?.errorType == "server_error")
            #expect(message.batches == [PostmanBatchRef(id: "b1", status: "messages_enqueued")])
            #expect(message.createdAt == ISO8601DateFormatter().date(from: "2026-11-21T12:00:00Z"))
            // Raw body: newest attempt listed first, offsets +08:00.
            let raw = try await rawRequest(
                server.baseURL + "/campaigns/c1/messages/message_1", authorization: "Bearer \(Fixture.key("c1"))")
            let attempts = try #require(jsonObject(raw.body)?["attempts"] as? [[String: Any]])
            #expect((attempts[0]["createdAt"] as? String) == "2026-11-21T21:00:00.250+08:00")
            #expect(raw.body.contains("\"templateBodyId\""))
        }
    }

    @Test(
        "Accepted retry: 201 with latestStatus created, one more attempt, counted in the ledger; in flight it cannot be retried")
    func acceptedThenInFlight() async throws {
        let data = SimulatorData(
            campaigns: [Fixture.campaign("c1")], messages: [Fixture.failed("message_1", outcomes: ["success@5"])])
        try await withSimulator(data) { server, client in
            let result = try await client.retryMessage(campaignId: "c1", messageId: "message_1", apiKey: Fixture.key("c1"))
            guard case .accepted(let message?) = result else {
                Issue.record("expected .accepted(message), got \(result)")
                return
            }
            #expect(message.latestStatus == "created")
            #expect(message.attemptCount == 2)
            #expect(message.retriesUsed == 1)
            #expect(message.newestErrorCode == nil)
            let again = await expectAPIError {
                try await client.retryMessage(campaignId: "c1", messageId: "message_1", apiKey: Fixture.key("c1"))
            }
            #expect(again?.kind == .http(status: 400))
            #expect(again?.code == "message_not_found_or_retry_message_not_in_failure_status")
            #expect(again?.isRetryable == false)
            #expect(again?.mayHaveReachedServer == false)
            #expect(again?.requestID?.isEmpty == false)
            let ledger = await server.ledger()
            #expect(ledger.acceptedRetries == ["message_1": 1])
        }
    }

    @Test("The fourth retry gets 400 too_many_message_attempts_error after three accepted")
    func fourthRetry() async throws {
        let data = SimulatorData(
            campaigns: [Fixture.campaign("c1")], messages: [Fixture.failed("message_1", outcomes: ["failure:routing_error@0"])])
        try await withSimulator(data) { server, client in
            for _ in 1...3 {
                _ = try await client.retryMessage(campaignId: "c1", messageId: "message_1", apiKey: Fixture.key("c1"))
            }
            let message = try await client.getMessage(campaignId: "c1", messageId: "message_1", apiKey: Fixture.key("c1"))
            #expect(message.latestStatus == "failure")
            #expect(message.retriesUsed == 3)
            #expect(message.newestErrorCode == "routing_error")
            let fourth = await expectAPIError {
                try await client.retryMessage(campaignId: "c1", messageId: "message_1", apiKey: Fixture.key("c1"))
            }
            #expect(fourth?.code == "too_many_message_attempts_error")
            #expect(fourth?.kind == .http(status: 400))
            #expect(await server.ledger().acceptedRetries["message_1"] == 3)
        }
    }

    @Test("retries from the data count towards the limit")
    func retriesFromData() async throws {
        let data = SimulatorData(campaigns: [Fixture.campaign("c1")], messages: [Fixture.failed("m", retries: 3)])
        try await withSimulator(data) { _, client in
            let message = try await client.getMessage(campaignId: "c1", messageId: "m", apiKey: Fixture.key("c1"))
            #expect(message.attemptCount == 4)  // padded so Postman's count matches `retries`
            let error = await expectAPIError {
                try await client.retryMessage(campaignId: "c1", messageId: "m", apiKey: Fixture.key("c1"))
            }
            #expect(error?.code == "too_many_message_attempts_error")
        }
    }

    @Test("Unknown messages: GET 404 message_not_found, retry 400; another campaign's message is unknown too")
    func unknownMessages() async throws {
        let data = SimulatorData(
            campaigns: [Fixture.campaign("c1"), Fixture.campaign("c2")],
            messages: [Fixture.failed("m1"), Fixture.failed("m2", campaign: "c2")])
        try await withSimulator(data) { _, client in
            let get = await expectAPIError {
                try await client.getMessage(campaignId: "c1", messageId: "nope", apiKey: Fixture.key("c1"))
            }
            #expect(get?.kind == .http(status: 404))
            #expect(get?.code == "message_not_found")
            #expect(get?.isRetryable == false)
            let retry = await expectAPIError {
                try await client.retryMessage(campaignId: "c1", messageId: "nope", apiKey: Fixture.key("c1"))
            }
            #expect(retry?.code == "message_not_found_or_retry_message_not_in_failure_status")
            let foreign = await expectAPIError {
                try await client.getMessage(campaignId: "c1", messageId: "m2", apiKey: Fixture.key("c1"))
            }
            #expect(foreign?.code == "message_not_found")
        }
    }

    @Test("Check order: status first, then batch, then count")
    func checkOrder() async throws {
        var inFlight = Fixture.failed("in_flight", batch: "b_done")
        inFlight.latestStatus = "sending"
        let data = SimulatorData(
            campaigns: [Fixture.campaign("c1")],
            batches: [
                .init(id: "b_done", campaignId: "c1", status: "messages_processing"),
                .init(id: "b_ok", campaignId: "c1", status: "messages_enqueuing_failed")
            ],
            messages: [
                inFlight,
                Fixture.failed("exhausted_in_bad_batch", batch: "b_done", retries: 3),
                Fixture.failed("exhausted_in_good_batch", batch: "b_ok", retries: 3),
                Fixture.failed("missing_batch", batch: "b_missing"),
                Fixture.failed("ok_in_good_batch", batch: "b_ok")
            ])
        try await withSimulator(data) { _, client in
            func code(_ id: String) async -> String? {
                await expectAPIError {
                    try await client.retryMessage(campaignId: "c1", messageId: id, apiKey: Fixture.key("c1"))
                }?.code
            }
            #expect(await code("in_flight") == "message_not_found_or_retry_message_not_in_failure_status")
            #expect(await code("exhausted_in_bad_batch") == "batch_not_found_or_is_not_retryable")
            #expect(await code("missing_batch") == "batch_not_found_or_is_not_retryable")
            #expect(await code("exhausted_in_good_batch") == "too_many_message_attempts_error")
            let ok = try await client.retryMessage(campaignId: "c1", messageId: "ok_in_good_batch", apiKey: Fixture.key("c1"))
            guard case .accepted(let m?) = ok else {
                Issue.record("not accepted with a body")
                return
            }
            #expect(m.batches.first?.status == "messages_enqueuing_failed")
        }
    }

    @Test("Odd ids travel as one percent-encoded segment", arguments: ["a/b", "..x", "%", "😀", "a b?c#d&e=f", "message_1/retry"])
    func oddIds(id: String) async throws {
        let data = SimulatorData(
            campaigns: [Fixture.campaign("c/1")],
            messages: [Fixture.failed(id, campaign: "c/1", outcomes: ["success@0"]), Fixture.failed("a", campaign: "c/1")])
        try await withSimulator(data) { server, client in
            let key = Fixture.key("c/1")
            let got = try await client.getMessage(campaignId: "c/1", messageId: id, apiKey: key)
            #expect(got.id == id)
            _ = try await client.retryMessage(campaignId: "c/1", messageId: id, apiKey: key)
            #expect(await server.ledger().acceptedRetries == [id: 1])
            #expect(await server.ledger().requests.last?.campaignId == "c/1")
        }
    }
}
