import Dispatch
import Foundation
import Logging
import RetrySettings
import ServiceLifecycle
import Synchronization
import UnixSignals

/// Set once SIGTERM or SIGINT arrived: the engine sends nothing new, settles what it sent, records
/// it and exits 75 (CONTRACT.md section 5).
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    /// True the first time only.
    func set() -> Bool { !flag.exchange(true, ordering: .relaxed) }
}

/// Runs `body` as the one service of a swift-service-lifecycle `ServiceGroup` that turns SIGTERM and
/// SIGINT into a graceful shutdown: `body`'s `StopFlag` is set and the engine winds down by itself
/// within seconds. A backstop ends the process with 75 after `forcedExitAfter` if something is blocked
/// where no flag is looked at (a query waiting on a lock); the journal is safe at any instant (it is
/// built to survive SIGKILL), so leaving then loses nothing.
func withGracefulShutdown(logger: Logger, _ body: @escaping @Sendable (StopFlag) async throws -> Void) async throws {
    let service = OneShotService(body: body)
    var groupLogger = logger
    groupLogger.logLevel = max(logger.logLevel, .warning)
    let group = ServiceGroup(
        configuration: .init(
            services: [
                .init(
                    service: service, successTerminationBehavior: .gracefullyShutdownGroup,
                    failureTerminationBehavior: .gracefullyShutdownGroup)
            ],
            gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: groupLogger))
    try await group.run()
    try service.outcome()
}

/// CONTRACT.md section 5: exit 75 within 10 seconds of SIGINT/SIGTERM.
let forcedExitAfter: Double = 8

/// The command's body as a service; its own errors (and exit codes) are kept for the caller rather than
/// handed to the group.
private final class OneShotService: Service {
    private let body: @Sendable (StopFlag) async throws -> Void
    private let stop = StopFlag()
    private let result = Mutex<Result<Void, any Error>?>(nil)

    init(body: @escaping @Sendable (StopFlag) async throws -> Void) { self.body = body }

    func run() async throws {
        let outcome: Result<Void, any Error>
        do {
            let stop = self.stop
            try await withGracefulShutdownHandler {
                try await body(stop)
            } onGracefulShutdown: {
                guard stop.set() else { return }
                DispatchQueue.global().asyncAfter(deadline: .now() + forcedExitAfter) {
                    FileHandle.standardError.write(
                        Data(
                            "postman-retry: still busy \(Int(forcedExitAfter)) s after the signal; exiting now, the next run resumes\n"
                                .utf8))
                    exit(ExitStatus.temporary.rawValue)
                }
            }
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        result.withLock { $0 = outcome }
    }

    func outcome() throws {
        try result.withLock { $0 }?.get()
    }
}
