import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import UnixSignals

/// Request context that keeps the connection's channel, so the drop-connection fault can close it.
struct SimRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}

/// The Postman v2 simulator, running in-process on a port of its own.
///
/// Tests start it with `start(…)` and `stop()`; the `postman-sim` executable uses `runService(…)`,
/// which adds signal handling.
public final class SimulatorServer: Sendable {
    public let port: Int
    public let host: String
    private let core: SimulatorCore
    private let task: Task<Void, any Error>
    private let group: ServiceGroup

    public var baseURL: String { "http://\(host):\(port)/api/v2" }

    private init(port: Int, host: String, core: SimulatorCore, task: Task<Void, any Error>, group: ServiceGroup) {
        self.port = port
        self.host = host
        self.core = core
        self.task = task
        self.group = group
    }

    /// Starts serving and returns once the port is bound. `port: 0` picks a free port.
    public static func start(
        data: SimulatorData?, options: SimulatorOptions, host: String = "127.0.0.1", port: Int = 0
    ) async throws -> SimulatorServer {
        let core = try SimulatorCore(data: data ?? SimulatorData(), options: options)
        let bound = PortPromise()
        let app = makeApplication(core: core, options: options, host: host, port: port) { bound.succeed($0) }
        // Our own ServiceGroup (no signal handling) so that stop() can shut down gracefully instead of cancelling.
        let group = ServiceGroup(configuration: .init(services: [app], logger: app.logger))
        let task = Task {
            do {
                try await group.run()
                bound.fail(SimulatorDataError("simulator stopped before it was listening"))
            } catch {
                bound.fail(error)
                throw error
            }
        }
        do {
            let actualPort = try await bound.value()
            return SimulatorServer(port: actualPort, host: host, core: core, task: task, group: group)
        } catch {
            task.cancel()
            throw error
        }
    }

    /// Runs until SIGTERM or SIGINT, then returns the final ledger (for `--ledger`).
    public static func runService(
        data: SimulatorData?, options: SimulatorOptions, host: String = "127.0.0.1", port: Int = 0,
        onListening: @escaping @Sendable (_ host: String, _ port: Int) -> Void
    ) async throws -> SimulatorLedger {
        let core = try SimulatorCore(data: data ?? SimulatorData(), options: options)
        let app = makeApplication(core: core, options: options, host: host, port: port) { onListening(host, $0) }
        try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
        return core.ledger()
    }

    /// Replaces all data and clears the ledger (as `POST /_sim/load`).
    /// Invalid data (duplicate ids, unknown campaigns, bad outcome scripts) is a programming error here and
    /// stops the process with the reason; use `tryLoad(_:)` to get it as an error instead.
    public func load(_ data: SimulatorData) async {
        do {
            try core.load(data)
        } catch {
            preconditionFailure("invalid simulator data: \(error)")
        }
    }

    /// Like `load(_:)`, but throws `SimulatorDataError` for invalid data (and then changes nothing).
    public func tryLoad(_ data: SimulatorData) async throws {
        try core.load(data)
    }

    /// Back to the data last loaded, with an empty ledger (as `POST /_sim/reset`).
    public func reset() async {
        core.reset()
    }

    public func ledger() async -> SimulatorLedger {
        core.ledger()
    }

    /// The ledger's clock now: seconds since the simulator started, as in `SimulatorLedger.Request.t`.
    public var secondsSinceStart: Double { core.nowT() }

    /// Stops accepting, lets requests in progress finish (a slow-response fault is cut short after 2 s).
    public func stop() async {
        await group.triggerGracefulShutdown()
        let task = self.task
        let watchdog = Task {
            try await Task.sleep(for: .seconds(2))
            task.cancel()
        }
        _ = try? await task.value
        watchdog.cancel()
    }

    // MARK: - Hummingbird wiring

    static func makeApplication(
        core: SimulatorCore, options: SimulatorOptions, host: String, port: Int,
        onBound: @escaping @Sendable (Int) -> Void
    ) -> Application<CallbackResponder<SimRequestContext>> {
        var logger = Logger(label: "postman-sim")
        logger.logLevel = options.logLevel
        let responder = CallbackResponder<SimRequestContext> { request, context in
            try await Self.respond(core: core, request: request, context: context)
        }
        return Application(
            responder: responder,
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in onBound(channel.localAddress?.port ?? port) },
            logger: logger
        )
    }

    static func respond(core: SimulatorCore, request: Request, context: SimRequestContext) async throws -> Response {
        let path = request.uri.path
        if path.hasPrefix("/_sim/") {
            return try await admin(core: core, request: request, path: path)
        }
        let simRequest = SimRequest(
            method: request.method.rawValue,
            rawPath: path,
            query: request.uri.query,
            authorization: request.headers[.authorization]
        )
        let answer = core.handle(simRequest)
        if answer.delaySeconds > 0 {
            try await Task.sleep(for: .milliseconds(Int(answer.delaySeconds * 1000)))
        }
        if answer.delivery == .drop {
            // Close without a byte of answer; the client sees the connection reset after sending.
            try? await context.channel.close()
            throw HTTPError(.internalServerError)
        }
        return makeResponse(status: answer.status, body: answer.body, extraHeaders: answer.headers)
    }

    static func admin(core: SimulatorCore, request: Request, path: String) async throws -> Response {
        switch (request.method, path) {
        case (.post, "/_sim/load"):
            let buffer = try await request.body.collect(upTo: 1 << 30)
            do {
                try core.load(SimulatorData.decode(from: Data(buffer.readableBytesView)))
            } catch {
                let body = JSON.object([("error", .object([("code", .string("invalid_data")), ("message", .string("\(error)"))]))]
                )
                return makeResponse(status: 400, body: body.serialized(), extraHeaders: [])
            }
            return makeResponse(status: 200, body: #"{"ok":true}"#, extraHeaders: [])
        case (.post, "/_sim/reset"):
            core.reset()
            return makeResponse(status: 200, body: #"{"ok":true}"#, extraHeaders: [])
        case (.get, "/_sim/ledger"):
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            let data = try encoder.encode(core.ledger())
            return makeResponse(status: 200, body: String(decoding: data, as: UTF8.self), extraHeaders: [])
        default:
            return makeResponse(
                status: 404, body: #"{"error":{"code":"not_found","message":"Unknown admin endpoint"}}"#, extraHeaders: [])
        }
    }

    static func makeResponse(status: Int, body: String?, extraHeaders: [(String, String)]) -> Response {
        var headers = HTTPFields()
        if body != nil { headers[.contentType] = "application/json; charset=utf-8" }
        for (name, value) in extraHeaders {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        let buffer = body.map { ByteBuffer(string: $0) } ?? ByteBuffer()
        return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: buffer))
    }
}

/// One-shot hand-over of the bound port from `onServerRunning` to `start`.
final class PortPromise: Sendable {
    private enum State {
        case pending([CheckedContinuation<Int, any Error>])
        case done(Result<Int, any Error>)
    }

    private let state = Mutex<State>(.pending([]))

    func succeed(_ port: Int) { complete(.success(port)) }
    func fail(_ error: any Error) { complete(.failure(error)) }

    private func complete(_ result: Result<Int, any Error>) {
        let waiters: [CheckedContinuation<Int, any Error>] = state.withLock { s in
            guard case .pending(let waiting) = s else { return [] }
            s = .done(result)
            return waiting
        }
        for w in waiters { w.resume(with: result) }
    }

    func value() async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in
            let ready: Result<Int, any Error>? = state.withLock { s in
                switch s {
                case .pending(var waiting):
                    waiting.append(continuation)
                    s = .pending(waiting)
                    return nil
                case .done(let result):
                    return result
                }
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}
