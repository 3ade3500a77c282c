import AsyncHTTPClient
import Foundation
import PostmanAPI
import PostmanSimulator
import Testing

@Suite("Faults, determinism and delivery timing", .serialized)
struct FaultAndTimingTests {
    @Test("1000 requests at a 10% 503 rate see roughly 100 503s, none of them a state change")
    func faultRate() async throws {
        var options = Fixture.options(seed: 42)
        options.faults.error5xxBefore = 0.10
        let data = SimulatorData(campaigns: [Fixture.campaign("c1")], messages: [Fixture.failed("m1")])
        try await withSimulator(data, options: options) { server, client in
            var unavailable = 0
            for _ in 0..<1000 {
                do {
                    _ = try await client.getMessage(campaignId: "c1", messageId: "m1", apiKey: Fixture.key("c1"))
                } catch let error as PostmanAPIError {
                    #expect(error.kind == .http(status: 503))
                    #expect(error.isRetryable && error.mayHaveReachedServer)
                    unavailable += 1
                }
            }
            #expect((70...130).contains(unavailable), "503s: \(unavailable)")
            #expect(await server.ledger().requests.filter { $0.status == 503 }.count == unavailable)
        }
    }

    @Test("5xx after accept: the retry took effect although the answer is 500")
    func errorAfterAccept() async throws {
        var options = Fixture.options()
        options.faults.error5xxAfterAccept = 1
        let data = SimulatorData(campaigns: [Fixture.campaign("c1")], messages: [Fixture.failed("m1", outcomes: ["success@10"])])
        try await withSimulator(data, options: options) { server, client in
            let error = await expectAPIError {
                try await client.retryMessage(campaignId: "c1", messageId: "m1", apiKey: Fixture.key("c1"))
            }
            #expect(error?.kind == .http(status: 500))
            #expect(error?.mayHaveReachedServer == true)
            let message = try await client.getMessage(campaignId: "c1", messageId: "m1", apiKey: Fixture.key("c1"))
            #expect(message.attemptCount == 2)  // "one more attempt than before means it was accepted"
            #expect(await server.ledger().acceptedRetries == ["m1": 1])
        }
    }

    @Test("A 201 with a malformed body is still .accepted(nil); a malformed 200 is badResponse")
    func malformedBodies() async throws {
        var options = Fixture.options()
        options.faults.malformedJSON = 1
        let data = SimulatorData(campaigns: [Fixture.campaign("c1")], messages: [Fixture.failed("m1")])
        try await withSimulator(data, options: options) { server, client in
            let result = try await client.retryMessage(campaignId: "c1", messageId: "m1", apiKey: Fixture.key("c1"))
            guard case .accepted(let message) = result else {
                Issue.record("a 201 with a malformed body must be .accepted: \(result)")
                return
            }
            #expect(message == nil)
            #expect(await server.ledger().acceptedRetries == ["m1": 1])
            let get = await expectAPIError {
                try await client.getMessage(campaignId: "c1", messageId: "m1", apiKey: Fixture.key("c1"))
            }
            #expect(get?.kind == .badResponse(status: 200))
            #expect(get?.isRetryable == true)
            #expect(get?.mayHaveReachedServer == true)
        }
    }

    @Test("Dropped connection: .connection, may have reached the server; ledger status 0")
    func droppedConnection() async throws {
        var options = Fixture.options()
        options.faults.dropConnection = 1
        let data = SimulatorData(campaigns: [Fixture.campaign("c1")], messages: [Fixture.failed("m1", outcomes: ["success@10"])])
        try await withSimulator(data, options: options, requestTimeout: .seconds(5)) { server, client in
            let error = await expectAPIError {
                try await client.retryMessage(campaignId: "c1", messageId: "m1", apiKey: Fixture.key("c1"))
            }
            #expect(error?.kind == .connection)
            #expect(error?.mayHaveReachedServer == true)
            let ledger = await server.ledger()
            #expect(ledger.requests.first?.status == 0)
            #expect(ledger.acceptedRetries == ["m1": 1])  // dropped after the retry took effect
        }
    }

    @Test("Slow response beyond the client's timeout: .timeout, may have reached the server")
    func slowResponse() async throws {
        var options = Fixture.options()
        options.faults.slowResponse = 1
        options.faults.slowResponseSeconds = 5
        let data = SimulatorData(campaigns: [Fixture.campaign("c1")], messages: [Fixture.failed("m1")])
        try await withSimulator(data, options: options, requestTimeout: .milliseconds(300)) { _, client in
            let started = ContinuousClock.now
            let error = await expectAPIError {
                try await client.getMessage(campaignId: "c1", messageId: "m1", apiKey: Fixture.key("c1"))
            }
            #expect(error?.kind == .timeout)
            #expect(error?.mayHaveReachedServer == true)
            #expect(ContinuousClock.now - started < .seconds(3))  // the answer would take 5 s
        }
    }

    @Test("Faults never touch /_sim/")
    func adminIsFaultFree() async throws {
        var options = Fixture.options()
        options.faults.error5xxBefore = 1
        options.faults.dropConnection = 1
        let data = SimulatorData(campaigns: [Fixture.campaign("c1")], messages: [Fixture.failed("m1")])
        try await withSimulator(data, options: options) { server, _ in
            let base = "http://127.0.0.1:\(server.port)"
            for _ in 0..<5 {
                let status = try await rawRequest(base + "/_sim/ledger").status
                #expect(status == 200)
            }
        }
    }

    @Test("Same seed, same data: same outcomes, whatever the order of the retries")
    func determinism() async throws {
        let ids = (0..<40).map { "message_\($0)" }
        let data = SimulatorData(campaigns: [Fixture.campaign("c1")], messages: ids.map { Fixture.failed($0) })
        func outcomes(seed: UInt64, order: [String]) async throws -> [String: String] {
            try await withSimulator(data, options: Fixture.options(seed: seed, timeScale: 1000)) { _, client in
                for id in order {
                    _ = try await client.retryMessage(campaignId: "c1", messageId: id, apiKey: Fixture.key("c1"))
                }
                var result: [String: String] = [:]
                for id in ids {
                    let m = try await pollUntil(client, id: id)
                    result[id] = m.latestStatus + "/" + (m.newestErrorCode ?? "-")
                }
                return result
            }
        }
        let first = try await outcomes(seed: 7, order: ids)
        let second = try await outcomes(seed: 7, order: ids.reversed())
        let otherSeed = try await outcomes(seed: 8, order: ids)
        #expect(first == second)
        #expect(first != otherSeed)
        #expect(Set(first.values).count > 1)  // a mix of outcomes, not one repeated
        let finals: Set<Substring> = ["success", "failure", "sent_to_telco"]
        #expect(first.values.allSatisfy { finals.contains($0.split(separator: "/")[0]) })
    }

    @Test("--time-scale makes outcomes appear fast")
    func timeScale() async throws {
        // An outcome scripted at 10 s comes in 0.5 s at scale 20; the bound leaves room for a loaded machine's
        // round trips (600 ms once left about 0.5 s for ten of them) and still fails without the scale.
        let data = SimulatorData(
            campaigns: [Fixture.campaign("c1")], messages: [Fixture.failed("m1", outcomes: ["success@10"])])
        try await withSimulator(data, options: Fixture.options(timeScale: 20)) { _, client in
            let started = ContinuousClock.now
            let result = try await client.retryMessage(campaignId: "c1", messageId: "m1", apiKey: Fixture.key("c1"))
            guard case .accepted(let m) = result else {
                Issue.record("the retry was not accepted: \(result)")
                return
            }
            #expect(m?.latestStatus == "created")
            let final = try await pollUntil(client, id: "m1", timeout: .seconds(6))
            #expect(final.latestStatus == "success")
            #expect(ContinuousClock.now - started < .seconds(5))  // at scale 1 it takes 10 s
        }
    }

    @Test("A retried message passes through the in-flight statuses in order")
    func progression() async throws {
        let data = SimulatorData(campaigns: [Fixture.campaign("c1")], messages: [Fixture.failed("m1", outcomes: ["success@2.5"])])
        try await withSimulator(data) { _, client in
            _ = try await client.retryMessage(campaignId: "c1", messageId: "m1", apiKey: Fixture.key("c1"))
            var seen: [String] = []
            // 2.5 s over five steps leaves each status about 0.5 s: a busy CI machine that stalls a read for
            // 0.2 s still sees every step (0.8 s, once, saw only three)
            let deadline = ContinuousClock.now + .seconds(8)
            while seen.last != "success", ContinuousClock.now < deadline {
                let status = try await client.getMessage(campaignId: "c1", messageId: "m1", apiKey: Fixture.key("c1"))
                    .latestStatus
                if seen.last != status { seen.append(status) }
                try await Task.sleep(for: .milliseconds(40))
            }
            let order = ["created", "enqueued", "sending", "sent", "sent_to_telco", "success"]
            #expect(seen.last == "success")
            #expect(seen.allSatisfy(order.contains))
            #expect(seen == seen.sorted { order.firstIndex(of: $0)! < order.firstIndex(of: $1)! })
            #expect(seen.count >= 4)
        }
    }

    @Test("Foreign recipients end in sent_to_telco; stuck never ends; scripts step through and repeat the last")
    func scriptedOutcomes() async throws {
        let data = SimulatorData(
            campaigns: [Fixture.campaign("c1")],
            messages: [
                Fixture.failed("foreign", recipient: "14155550100", outcomes: ["success@0"]),
                Fixture.failed("stuck", outcomes: ["stuck@0.05"]),
                Fixture.failed("script", outcomes: ["failure:message_expired@0", "failure:routing_error@0"])
            ])
        try await withSimulator(data) { _, client in
            let key = Fixture.key("c1")
            for id in ["foreign", "stuck", "script"] {
                _ = try await client.retryMessage(campaignId: "c1", messageId: id, apiKey: key)
            }
            try await Task.sleep(for: .milliseconds(300))
            #expect(
                try await client.getMessage(campaignId: "c1", messageId: "foreign", apiKey: key).latestStatus == "sent_to_telco")
            #expect(try await client.getMessage(campaignId: "c1", messageId: "stuck", apiKey: key).latestStatus == "sent")
            var codes: [String?] = []
            codes.append(try await client.getMessage(campaignId: "c1", messageId: "script", apiKey: key).newestErrorCode)
            for _ in 0..<2 {
                _ = try await client.retryMessage(campaignId: "c1", messageId: "script", apiKey: key)
                codes.append(try await client.getMessage(campaignId: "c1", messageId: "script", apiKey: key).newestErrorCode)
            }
            #expect(codes == ["message_expired", "routing_error", "routing_error"])
        }
    }
}
