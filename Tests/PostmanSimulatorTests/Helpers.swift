import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import PostmanAPI
import PostmanSimulator
import Testing

/// Small builders so each test states only what matters to it.
enum Fixture {
    static func campaign(_ id: String, rateLimit: Int? = 100_000) -> SimulatorData.Campaign {
        .init(id: id, apiKey: key(id), rateLimit: rateLimit)
    }

    static func key(_ campaignId: String) -> String { "key-\(campaignId)-s3cret" }

    static func failed(
        _ id: String, campaign: String = "c1", batch: String? = nil, recipient: String = "6591234567",
        retries: Int = 0, code: String = "recipient_unavailable", outcomes: [String]? = nil,
        at createdAt: String = "2026-11-21T20:00:00+08:00"
    ) -> SimulatorData.Message {
        .init(
            id: id, campaignId: campaign, batchId: batch, recipient: recipient, latestStatus: "failure",
            retries: retries,
            attempts: [.init(status: "failure", errorType: "delivery_error", errorCode: code, createdAt: createdAt)],
            outcomes: outcomes
        )
    }

    static func options(seed: UInt64 = 1, timeScale: Double = 1) -> SimulatorOptions {
        var o = SimulatorOptions()
        o.seed = seed
        o.timeScale = timeScale
        return o
    }
}

/// Starts a simulator on a free loopback port, hands a client to `body`, and always stops it.
func withSimulator<T>(
    _ data: SimulatorData, options: SimulatorOptions = Fixture.options(), requestTimeout: Duration = .seconds(10),
    _ body: (SimulatorServer, PostmanClient) async throws -> T
) async throws -> T {
    let server = try await SimulatorServer.start(data: data, options: options, host: "127.0.0.1", port: 0)
    let client = PostmanClient(baseURL: server.baseURL, requestTimeout: requestTimeout)
    do {
        let result = try await body(server, client)
        await server.stop()
        return result
    } catch {
        await server.stop()
        throw error
    }
}

/// Runs `call` expecting a PostmanAPIError and returns it.
func expectAPIError(
    _ call: () async throws -> some Any, sourceLocation: SourceLocation = #_sourceLocation
) async -> PostmanAPIError? {
    do {
        _ = try await call()
        Issue.record("expected a PostmanAPIError, got success", sourceLocation: sourceLocation)
        return nil
    } catch let error as PostmanAPIError {
        return error
    } catch {
        Issue.record("expected a PostmanAPIError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// A raw request for things the typed client cannot express (no Authorization header, `before=`, admin).
func rawRequest(
    _ url: String, method: HTTPMethod = .GET, authorization: String? = nil, body: Data? = nil
) async throws -> (status: Int, body: String, headers: HTTPHeaders) {
    var request = HTTPClientRequest(url: url)
    request.method = method
    if let authorization { request.headers.add(name: "Authorization", value: authorization) }
    if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
    let buffer = try await response.body.collect(upTo: 64 * 1024 * 1024)
    return (Int(response.status.code), String(buffer: buffer), response.headers)
}

func jsonObject(_ text: String) -> [String: Any]? {
    (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
}

/// Polls until `latestStatus` is one of `final` or the deadline passes; returns the last message seen.
/// (`sent_to_telco` is final only for foreign numbers, so it is not in the default set.)
func pollUntil(
    _ client: PostmanClient, campaign: String = "c1", id: String, final: Set<String> = ["success", "failure"],
    timeout: Duration = .seconds(3)
) async throws -> PostmanMessage {
    let deadline = ContinuousClock.now + timeout
    while true {
        let m = try await client.getMessage(campaignId: campaign, messageId: id, apiKey: Fixture.key(campaign))
        if final.contains(m.latestStatus) || ContinuousClock.now > deadline { return m }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// Reads `messageId` `count` times at once (so the requests arrive within a second even on a loaded
/// machine) and returns each read's error, nil for a read that succeeded.
func readConcurrently(
    _ client: PostmanClient, campaignId: String, messageId: String, count: Int
) async -> [PostmanAPIError?] {
    await withTaskGroup(of: PostmanAPIError?.self) { group in
        for _ in 0..<count {
            group.addTask {
                do {
                    _ = try await client.getMessage(campaignId: campaignId, messageId: messageId, apiKey: Fixture.key(campaignId))
                    return nil
                } catch {
                    return (error as? PostmanAPIError) ?? PostmanAPIError(kind: .connection, message: "\(error)")
                }
            }
        }
        var all: [PostmanAPIError?] = []
        for await result in group { all.append(result) }
        return all
    }
}
