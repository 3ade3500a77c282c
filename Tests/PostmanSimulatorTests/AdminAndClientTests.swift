import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import PostmanSimulator
import Testing

@testable import PostmanAPI

@Suite("Admin endpoints and ledger", .serialized)
struct AdminTests {
    static let contractExample = """
        {
          "campaigns": [ { "id": "c1", "api_key": "key-c1", "rate_limit": 10 } ],
          "batches":   [ { "id": "b1", "campaign_id": "c1", "status": "messages_enqueued" } ],
          "messages":  [ {
              "id": "message_1", "campaign_id": "c1", "batch_id": null, "recipient": "6591234567",
              "latest_status": "failure", "retries": 0,
              "attempts": [ { "status": "failure", "error_type": "delivery_error", "error_code": "recipient_unavailable",
                              "created_at": "2026-11-21T20:00:00+08:00" } ],
              "outcomes": [ "failure:recipient_unavailable", "success" ]
          } ]
        }
        """

    @Test("The contract's example data decodes; a bad outcome script is rejected with its message id")
    func dataFormat() throws {
        let data = try SimulatorData.decode(from: Data(Self.contractExample.utf8))
        #expect(data.campaigns == [.init(id: "c1", apiKey: "key-c1", rateLimit: 10)])
        #expect(data.messages.first?.outcomes == ["failure:recipient_unavailable", "success"])
        #expect(data.messages.first?.batchId == nil)
        let bad = Self.contractExample.replacingOccurrences(of: "\"success\" ]", with: "\"succes\" ]")
        #expect(throws: SimulatorDataError.self) { try SimulatorData.decode(from: Data(bad.utf8)) }
    }

    @Test("/_sim/load replaces data and clears the ledger; /_sim/reset goes back to it; /_sim/ledger has the contract's keys")
    func loadResetLedger() async throws {
        let data = SimulatorData(campaigns: [Fixture.campaign("c1")], messages: [Fixture.failed("old")])
        try await withSimulator(data) { server, client in
            let admin = "http://127.0.0.1:\(server.port)/_sim"
            _ = try await client.getMessage(campaignId: "c1", messageId: "old", apiKey: Fixture.key("c1"))
            let ledgerText = try await rawRequest(admin + "/ledger").body
            let ledger = try #require(jsonObject(ledgerText))
            #expect(Set(ledger.keys) == ["requests", "accepted_retries", "rate_limited", "max_requests_in_1s"])
            let entry = try #require((ledger["requests"] as? [[String: Any]])?.first)
            #expect(Set(entry.keys) == ["t", "campaign_id", "method", "path", "status"])
            #expect(entry["path"] as? String == "/api/v2/campaigns/c1/messages/old")
            #expect(entry["method"] as? String == "GET")
            #expect(entry["status"] as? Int == 200)

            let loaded = try await rawRequest(admin + "/load", method: .POST, body: Data(Self.contractExample.utf8))
            #expect(loaded.status == 200)
            #expect(await server.ledger().requests.isEmpty)
            let notFound = await expectAPIError {
                try await client.getMessage(campaignId: "c1", messageId: "old", apiKey: Fixture.key("c1"))
            }
            #expect(notFound?.kind == .http(status: 401))  // the new data has another key for c1
            _ = try await client.retryMessage(campaignId: "c1", messageId: "message_1", apiKey: "key-c1")
            #expect(await server.ledger().acceptedRetries == ["message_1": 1])

            #expect(try await rawRequest(admin + "/reset", method: .POST).status == 200)
            let ledgerAfterReset = await server.ledger()
            #expect(ledgerAfterReset.requests.isEmpty && ledgerAfterReset.acceptedRetries.isEmpty)
            let fresh = try await client.getMessage(campaignId: "c1", messageId: "message_1", apiKey: "key-c1")
            #expect(fresh.latestStatus == "failure" && fresh.attemptCount == 1)

            let rejected = try await rawRequest(admin + "/load", method: .POST, body: Data("{\"messages\":[{\"id\":1}]}".utf8))
            #expect(rejected.status == 400)

            // In-process: load replaces the data; tryLoad refuses bad data and changes nothing.
            await server.load(data)
            #expect(try await client.getMessage(campaignId: "c1", messageId: "old", apiKey: Fixture.key("c1")).id == "old")
            let duplicate = SimulatorData(
                campaigns: [Fixture.campaign("c1")], messages: [Fixture.failed("x"), Fixture.failed("x")])
            await #expect(throws: SimulatorDataError.self) { try await server.tryLoad(duplicate) }
            #expect(try await client.getMessage(campaignId: "c1", messageId: "old", apiKey: Fixture.key("c1")).id == "old")
        }
    }
}

@Suite("Client: encoding, parsing, error shapes, secrecy", .serialized)
struct ClientTests {
    @Test("PathSegment.encode keeps only RFC 3986 unreserved characters")
    func pathSegment() {
        #expect(PathSegment.encode("a/b") == "a%2Fb")
        #expect(PathSegment.encode("..x") == "..x")
        #expect(PathSegment.encode("%") == "%25")
        #expect(PathSegment.encode("😀") == "%F0%9F%98%80")
        #expect(PathSegment.encode("a b?c#d&e=f+g") == "a%20b%3Fc%23d%26e%3Df%2Bg")
        #expect(PathSegment.encode("AZaz09-._~") == "AZaz09-._~")
        #expect(PathSegment.encode("") == "")
    }

    @Test("Timestamps: offsets, Z, fractions, no seconds fraction")
    func timestamps() {
        let reference = Date(timeIntervalSince1970: 1_795_262_400)  // 2026-11-21T12:00:00Z
        #expect(ISO8601.parse("2026-11-21T20:00:00+08:00") == reference)
        #expect(ISO8601.parse("2026-11-21T12:00:00Z") == reference)
        #expect(ISO8601.parse("2026-11-21T20:00:00.500+0800") == reference.addingTimeInterval(0.5))
        #expect(ISO8601.parse("2026-11-21 04:00:00-08:00") == reference)
        #expect(ISO8601.parse("2026-11-21") == nil)
        #expect(ISO8601.parse("yesterday") == nil)
    }

    @Test("Both attempt shapes decode; newest error by createdAt, not by array order")
    func messageDecoding() throws {
        let single: [String: Any] = [
            "id": "m", "latestStatus": "failure", "recipient": 6_591_234_567, "unknownField": ["x": 1],
            "attempts": [
                [
                    "status": "failure", "createdAt": "2026-11-21T10:30:00+08:00",
                    "error": ["type": "delivery_error", "code": "recipient_unavailable"]
                ],
                [
                    "status": "failure", "createdAt": "2026-11-21T10:57:00+08:00",
                    "error": ["type": "server_error", "code": "server_unknown_error"]
                ]
            ]
        ]
        let m = try #require(Decode.message(single))
        #expect(m.recipient == "6591234567")
        #expect(m.attemptCount == 2 && m.retriesUsed == 1)
        #expect(m.newestErrorCode == "server_unknown_error")

        let batch: [String: Any] = [
            "id": "m", "latestStatus": "success", "numAttempts": 3,
            "messageAttempts": [
                ["status": "success", "createdAt": "2026-11-21T11:00:00+08:00", "errorType": NSNull(), "errorCode": NSNull()],
                [
                    "status": "failure", "createdAt": "2026-11-21T10:00:00+08:00", "errorType": "delivery_error",
                    "errorCode": "routing_error"
                ]
            ]
        ]
        let b = try #require(Decode.message(batch))
        #expect(b.attempts?.count == 2)
        #expect(b.attempts?[1].errorCode == "routing_error")
        #expect(b.numAttempts == 3)
        // Two attempts listed, three counted: one left out or unreadable. No count, rather than one that may be
        // short (as a witness it would take a retry that landed for one that did not).
        #expect(b.attemptCount == nil && b.retriesUsed == nil)
        #expect(b.newestErrorCode == nil)  // newest attempt succeeded

        let counted = try #require(Decode.message(["id": "m", "latestStatus": "failure", "numAttempts": "4"]))
        #expect(counted.attempts == nil)
        #expect(counted.attemptCount == 4 && counted.retriesUsed == 3)
        #expect(counted.newestErrorCode == nil)
        #expect(Decode.message(["latestStatus": "failure"]) == nil)  // no id: not a message
    }

    @Test("Error bodies: new format, legacy format, proxy HTML, Retry-After; a 201 with garbage is accepted")
    func errorShapes() async throws {
        try await withStub { baseURL in
            let client = PostmanClient(baseURL: baseURL, requestTimeout: .seconds(5))
            let newFormat = await expectAPIError {
                try await client.getMessage(campaignId: "c", messageId: "new", apiKey: "SECRET-KEY-123")
            }
            #expect(newFormat?.code == "parameter_invalid")
            #expect(newFormat?.message == "bad limit")
            #expect(newFormat?.requestID == "err_1")
            #expect(newFormat?.isRetryable == false)

            let legacy = await expectAPIError {
                try await client.getMessage(campaignId: "c", messageId: "legacy", apiKey: "SECRET-KEY-123")
            }
            #expect(legacy?.kind == .http(status: 400))
            #expect(legacy?.code == nil)
            #expect(legacy?.message == "Bad Request")

            let html = await expectAPIError {
                try await client.getMessage(campaignId: "c", messageId: "html", apiKey: "SECRET-KEY-123")
            }
            #expect(html?.kind == .http(status: 502))
            #expect(html?.code == nil)
            #expect(html?.isRetryable == true)
            #expect(html?.mayHaveReachedServer == true)

            let limited = await expectAPIError {
                try await client.getMessage(campaignId: "c", messageId: "limited", apiKey: "SECRET-KEY-123")
            }
            #expect(limited?.code == "too_many_requests")
            #expect(limited?.retryAfter == .seconds(3))
            #expect(limited?.isRetryable == true)

            let forbidden = await expectAPIError {
                try await client.getMessage(campaignId: "c", messageId: "echo", apiKey: "SECRET-KEY-123")
            }
            #expect(forbidden?.kind == .http(status: 403))
            #expect(forbidden?.isRetryable == false)
            for error in [newFormat, legacy, html, limited, forbidden].compactMap({ $0 }) {
                #expect(!"\(error)".contains("SECRET-KEY-123"))
                #expect(!String(reflecting: error).contains("SECRET-KEY-123"))
                #expect(!(error.message ?? "").contains("SECRET-KEY-123"))
            }

            let garbage = try await client.retryMessage(campaignId: "c", messageId: "garbage", apiKey: "SECRET-KEY-123")
            if case .accepted(let none) = garbage {
                #expect(none == nil)
            } else {
                Issue.record("a 201 with a body that is not JSON must be .accepted: \(garbage)")
            }

            let unexpected = await expectAPIError {
                try await client.retryMessage(campaignId: "c", messageId: "ok200", apiKey: "k")
            }
            #expect(unexpected?.kind == .badResponse(status: 200))  // not the documented 201
            #expect(unexpected?.mayHaveReachedServer == true)
        }
    }

    @Test("The client sends the key only as a Bearer header, with a stable User-Agent")
    func headers() async throws {
        try await withStub { baseURL in
            let client = PostmanClient(baseURL: baseURL + "/", userAgent: "postman-retry/test")
            let m = try await client.getMessage(campaignId: "c", messageId: "headers", apiKey: "SECRET-KEY-123")
            #expect(m.recipient == "Bearer SECRET-KEY-123|postman-retry/test|/campaigns/c/messages/headers")
        }
    }

    @Test("Unreachable server: connection error that cannot have reached it; the key is not in it")
    func unreachable() async throws {
        // A port bound but not listening, held for the whole test: a connect is refused, and no other test's
        // server can take the port meanwhile (a port bound and released was taken by one in a full run).
        let held = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(held >= 0)
        defer { close(held) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                bind(held, raw, length) == 0 && getsockname(held, raw, &length) == 0
            }
        }
        #expect(bound)
        let port = Int(UInt16(bigEndian: address.sin_port))
        let client = PostmanClient(baseURL: "http://127.0.0.1:\(port)/api/v2", requestTimeout: .seconds(1))
        let error = await expectAPIError {
            try await client.getMessage(campaignId: "c", messageId: "m", apiKey: "SECRET-KEY-123")
        }
        #expect(error?.kind == .connection)  // refused: AHC retries the connect until the deadline, then reports ECONNREFUSED
        #expect(error?.mayHaveReachedServer == false)
        #expect(error?.isRetryable == true)
        #expect(!String(reflecting: error as Any).contains("SECRET-KEY-123"))
    }

    @Test("Errors from the simulator never show the key")
    func simulatorErrorsHideKey() async throws {
        let data = SimulatorData(
            campaigns: [Fixture.campaign("c1", rateLimit: 1), Fixture.campaign("c2")], messages: [Fixture.failed("m1")])
        try await withSimulator(data) { _, client in
            var errors: [PostmanAPIError] = []
            // A 404 from one campaign, and a 429 from requests sent at once to a campaign limited to 1 a second
            // (sent one after the other, a loaded CI machine once spaced them more than a second apart; two at
            // once, once too: a few rounds of three until one is refused).
            do {
                _ = try await client.getMessage(campaignId: "c2", messageId: "nope", apiKey: Fixture.key("c2"))
            } catch let e as PostmanAPIError { errors.append(e) }
            for _ in 0..<5 where !errors.contains(where: { $0.httpStatus == 429 }) {
                errors += await readConcurrently(client, campaignId: "c1", messageId: "m1", count: 3).compactMap { $0 }
            }
            #expect(errors.first?.httpStatus == 404 && errors.contains { $0.httpStatus == 429 }, "\(errors.map(\.httpStatus))")
            for e in errors {
                for key in [Fixture.key("c1"), Fixture.key("c2")] {
                    #expect(!"\(e)".contains(key) && !String(reflecting: e).contains(key))
                }
            }
        }
    }

    /// A throwaway server answering canned bodies keyed by the message id in the path.
    func withStub(_ body: (String) async throws -> Void) async throws {
        let responder = CallbackResponder<BasicRequestContext> { request, _ in
            let path = request.uri.path
            func reply(_ status: HTTPResponse.Status, _ text: String, _ extra: HTTPFields = [:]) -> Response {
                Response(status: status, headers: extra, body: .init(byteBuffer: ByteBuffer(string: text)))
            }
            switch path.split(separator: "/").dropFirst(3).first ?? "" {
            case "new":
                return reply(
                    .badRequest,
                    #"{"error":{"code":"parameter_invalid","message":"bad limit","type":"invalid_request_error","id":"err_1"}}"#)
            case "legacy": return reply(.badRequest, #"{"message":"Bad Request","statusCode":400}"#)
            case "html": return reply(.badGateway, "<html><body>502 Bad Gateway</body></html>")
            case "limited":
                return reply(
                    .tooManyRequests, #"{"error":{"code":"too_many_requests","message":"slow down"}}"#, [.retryAfter: "3"])
            case "echo":
                // A misbehaving server echoing the Authorization header back.
                let auth = request.headers[.authorization] ?? ""
                return reply(.forbidden, #"{"error":{"code":"forbidden","message":"refused \#(auth)","id":"\#(auth)"}}"#)
            case "garbage": return reply(.created, #"{"id": "m", "latestSta"#)
            case "ok200": return reply(.ok, #"{"id":"m","latestStatus":"created"}"#)
            case "headers":
                let summary = (request.headers[.authorization] ?? "") + "|" + (request.headers[.userAgent] ?? "") + "|" + path
                return reply(.ok, #"{"id":"m","latestStatus":"failure","recipient":"\#(summary)"}"#)
            default: return reply(.notFound, "")
            }
        }
        let bound = AsyncStream<Int>.makeStream()
        var logger = Logger(label: "stub")
        logger.logLevel = .critical
        let app = Application(
            responder: responder, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { bound.continuation.yield($0.localAddress?.port ?? 0) }, logger: logger)
        let task = Task { try await app.run() }
        var iterator = bound.stream.makeAsyncIterator()
        let port = await iterator.next() ?? 0
        do {
            try await body("http://127.0.0.1:\(port)")
        } catch {
            task.cancel()
            throw error
        }
        task.cancel()
        _ = try? await task.value
    }
}
