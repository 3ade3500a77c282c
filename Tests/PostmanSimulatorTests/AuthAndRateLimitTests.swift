import AsyncHTTPClient
import Foundation
import PostmanAPI
import Testing

@testable import PostmanSimulator

@Suite("Authentication and rate limits", .serialized)
struct AuthAndRateLimitTests {
    @Test("Missing Authorization: legacy 401 body; wrong key: invalid_api_key_provided; blocked IP: invalid_ip_address_error")
    func authentication() async throws {
        var options = Fixture.options()
        options.ipWhitelistFailureCampaigns = ["c_ip"]
        let data = SimulatorData(campaigns: [Fixture.campaign("c1"), Fixture.campaign("c_ip")], messages: [Fixture.failed("m1")])
        try await withSimulator(data, options: options) { server, client in
            let raw = try await rawRequest(server.baseURL + "/campaigns/c1/messages/m1")
            #expect(raw.status == 401)
            let legacy = try #require(jsonObject(raw.body))
            #expect(legacy["message"] as? String == "Unauthorized")
            #expect(legacy["statusCode"] as? Int == 401)

            let wrong = await expectAPIError {
                try await client.getMessage(campaignId: "c1", messageId: "m1", apiKey: "not-the-key")
            }
            #expect(wrong?.kind == .http(status: 401))
            #expect(wrong?.code == "invalid_api_key_provided")
            #expect(wrong?.isRetryable == false)
            #expect(wrong?.mayHaveReachedServer == false)

            // A key of another campaign is wrong for this one.
            let other = await expectAPIError {
                try await client.getMessage(campaignId: "c1", messageId: "m1", apiKey: Fixture.key("c_ip"))
            }
            #expect(other?.code == "invalid_api_key_provided")

            let ip = await expectAPIError {
                try await client.retryMessage(campaignId: "c_ip", messageId: "m1", apiKey: Fixture.key("c_ip"))
            }
            #expect(ip?.code == "invalid_ip_address_error")
            #expect(ip?.kind == .http(status: 401))

            // None of it was a retry.
            #expect(await server.ledger().acceptedRetries.isEmpty)
        }
    }

    @Test("11 requests inside one second: exactly one 429, another campaign unaffected, ledger counts them")
    func elevenInOneSecond() async throws {
        var options = Fixture.options()
        options.retryAfterSeconds = 2
        let data = SimulatorData(
            campaigns: [Fixture.campaign("c1", rateLimit: nil), Fixture.campaign("c2", rateLimit: nil)],
            messages: [Fixture.failed("m1"), Fixture.failed("m2", campaign: "c2")])
        try await withSimulator(data, options: options) { server, client in
            // What counts is when the eleven arrived (the ledger), not how long their answers took. A busy
            // machine (the whole suite in parallel) once spread them over 1.005 s: the burst is sent again,
            // on a reset simulator, up to three times, until it arrives inside the window.
            var results: [PostmanAPIError?] = []
            var span = Double.infinity
            var started = ContinuousClock.now
            for attempt in 1...3 where span >= 0.9 {
                if attempt > 1 {
                    await server.reset()
                    try await Task.sleep(for: .milliseconds(1100))
                }
                started = ContinuousClock.now
                results = await readConcurrently(client, campaignId: "c1", messageId: "m1", count: 11)
                let arrivals = await server.ledger().requests.filter { $0.campaignId == "c1" }.map(\.t)
                span = (arrivals.max() ?? 0) - (arrivals.min() ?? 0)
            }
            let other = try await client.getMessage(campaignId: "c2", messageId: "m2", apiKey: Fixture.key("c2"))
            try #require(
                span < 0.9,
                "the eleven arrived over \(span) s, too slow for a one-second window (\(ContinuousClock.now - started))")
            let limited = results.compactMap { $0 }
            #expect(limited.count == 1)
            #expect(limited.first?.kind == .http(status: 429))
            #expect(limited.first?.code == "too_many_requests")
            #expect(limited.first?.isRetryable == true)
            #expect(limited.first?.retryAfter == .seconds(2))
            #expect(other.id == "m2")
            let ledger = await server.ledger()
            #expect(ledger.rateLimited == 1)
            #expect(ledger.maxRequestsIn1s == ["c1": 11, "c2": 1])
            #expect(ledger.requests.filter { $0.status == 429 }.count == 1)
            #expect(ledger.requests.count == 12)
        }
    }

    @Test("A campaign's rate_limit from the data wins over the default")
    func campaignLimitWins() async throws {
        var options = Fixture.options()
        options.defaultRateLimit = 1
        let data = SimulatorData(campaigns: [Fixture.campaign("c1", rateLimit: 3)], messages: [Fixture.failed("m1")])
        try await withSimulator(data, options: options) { server, client in
            // Four at once, so they arrive within one second even on a loaded machine (sent one after
            // the other, a CI machine once spread them over 1.7 s and none was refused).
            let statuses = await readConcurrently(client, campaignId: "c1", messageId: "m1", count: 4)
                .map { error in error.map { $0.httpStatus ?? -1 } ?? 200 }.sorted()
            let ledger = await server.ledger()
            let span = (ledger.requests.map(\.t).max() ?? 0) - (ledger.requests.map(\.t).min() ?? 0)
            #expect(statuses == [200, 200, 200, 429], "arrivals spread over \(span) s")
            #expect(ledger.maxRequestsIn1s["c1"] == 4)
        }
    }

    @Test("Sliding window: refused requests do not use it up; a slot frees exactly one second later")
    func slidingWindow() {
        var window = CampaignWindow(limit: 2, backgroundRate: 0, startT: 0)
        let admitted = [0.0, 0.1, 0.5, 0.99, 1.0, 1.05, 1.08, 1.11].map { window.admit($0) }
        // The window ending at t is (t-1, t]: at 1.0 the request of 0.0 has left it, and the three refusals
        // before took no slot. 1.05 and 1.08 find 0.1 and 1.0 inside; at 1.11 0.1 has left.
        #expect(admitted == [true, true, false, false, true, false, false, true])
        for t in [0.0, 0.1, 0.5, 0.99, 1.0] { window.recordArrival(t) }
        #expect(window.maxArrivals == 4)  // 0.1 ... 1.0
        window.recordArrival(1.05)
        #expect(window.maxArrivals == 5)  // 0.1 ... 1.05
    }

    @Test("Background traffic uses up the window")
    func backgroundTraffic() {
        var window = CampaignWindow(limit: 10, backgroundRate: 8, startT: 0)
        window.catchUpBackground(to: 5.0)
        // 8 synthetic requests per second leave 2 slots.
        let admitted = (0..<3).map { _ in window.admit(5.0) }
        #expect(admitted == [true, true, false])
    }
}
