import Foundation
import Logging
import PostmanAPI
import RetryCore
import RetryJournal
import RetrySettings
import Synchronization

/// Why a run stops before its work is done.
enum StopReason: Sendable, Equatable {
    /// SIGINT/SIGTERM: no new retry; settle what is unknown; exit 75.
    case signal
    /// 401/403: the key or the source IP was refused; nothing more is sent; exit 77.
    case refused(String)
    /// Postman did not answer for too long; exit 69.
    case unreachable(String)
    /// The database failed under us: exit 75 when transient, 64 for a missing grant, else 1.
    case database(String, status: ExitStatus)
    /// `run --worker`: another worker took over a lease this one failed to renew in time; exit 75.
    case leaseLost(String)
    /// The run's hold (the journal's `run_holders`) was lost or could not be renewed; exit 75.
    case holdLost(String)

    var exitStatus: ExitStatus {
        switch self {
        case .signal: return .temporary
        case .refused: return .noPermission
        case .unreachable: return .unavailable
        case .database(_, let status): return status
        case .leaseLost, .holdLost: return .temporary
        }
    }

    var message: String {
        switch self {
        case .signal: return "stopped by a signal; the next run resumes"
        case .refused(let why): return "Postman refused the API key or source IP (\(why)); nothing more was sent"
        case .unreachable(let why): return "Postman unreachable after all backoff (\(why))"
        case .database(let why, _): return "database failed during the run: \(why)"
        case .leaseLost(let why): return "stopped: \(why); the worker that holds the lease now resumes the campaign"
        case .holdLost(let why): return "stopped: \(why); nothing more was sent, and the next run resumes"
        }
    }
}

/// What every campaign worker of one run shares: the journal, the client, the settings and the stop flag.
final class RunContext: Sendable {
    let store: RunStore
    let client: PostmanClient
    let settings: RunSettings
    let run: RunRecord
    let logger: Logger
    /// No request to Postman before this instant: one second after the run lock was taken, so the
    /// previous lock holder's requests have left every 1-second window.
    let notBefore: ContinuousClock.Instant
    /// Test hook: `POSTMAN_RETRY_CRASH_AT=point:n` kills the process with SIGKILL the n-th time `point` is reached.
    let crashPoints: CrashPoints
    private let stopState = Mutex<StopReason?>(nil)
    private let stopNoticed = Mutex<ContinuousClock.Instant?>(nil)
    /// When the run first saw its stop (the run's loop looks four times a second; a worker napping up
    /// to a second may see it later, and times its grace from here).
    var stopNoticedAt: ContinuousClock.Instant? { stopNoticed.withLock { $0 } }
    /// SIGINT/SIGTERM seen by the process: consulted on every look at `stopReason`, so no retry goes out
    /// after a signal however busy the loop that polls it is.
    private let signalled: @Sendable () -> Bool
    /// This process's hold on the run: consulted like the signal, so a lost hold stops the run at once.
    let holder: RunHolder?
    /// The most message lifecycles one campaign worker held in memory at once (streaming, issue 17).
    private let lifecyclePeak = Mutex(0)

    func noteLifecycles(_ count: Int) { lifecyclePeak.withLock { $0 = max($0, count) } }
    var peakLifecycles: Int { lifecyclePeak.withLock { $0 } }

    private let loopPassCount = Mutex(0)
    func noteLoopPasses(_ count: Int) { loopPassCount.withLock { $0 += count } }
    var loopPasses: Int { loopPassCount.withLock { $0 } }

    init(
        store: RunStore, client: PostmanClient, settings: RunSettings, run: RunRecord, logger: Logger,
        notBefore: ContinuousClock.Instant, crashPoints: CrashPoints, signalled: @escaping @Sendable () -> Bool = { false },
        holder: RunHolder? = nil
    ) {
        self.signalled = signalled
        self.holder = holder
        self.store = store
        self.client = client
        self.settings = settings
        self.run = run
        self.logger = logger
        self.notBefore = notBefore
        self.crashPoints = crashPoints
    }

    var stopReason: StopReason? {
        if let reason = stopState.withLock({ $0 }) { return reason }
        if let lost = holder?.lostReason {
            stop(.holdLost(lost))
            return stopState.withLock { $0 }
        }
        guard signalled() else { return nil }
        stop(.signal)
        return stopState.withLock { $0 }
    }

    /// The first reason wins, except that a refusal or an outage overrides a plain signal.
    func stop(_ reason: StopReason) {
        stopState.withLock { current in
            switch current {
            case nil:
                current = reason
                stopNoticed.withLock { $0 = $0 ?? .now }
            case .signal?: if reason != .signal { current = reason }
            case .database?: if case .holdLost = reason { current = reason }
            default: break
            }
        }
    }
}

/// Deterministic crash injection for the crash tests (`point:count`, comma-separated).
///
/// Never in a production binary: the hook is compiled only into debug builds (the
/// `POSTMAN_RETRY_TEST_HOOKS` condition, set for `.debug` in Package.swift), and even there it is armed
/// only when `POSTMAN_RETRY_TEST_HOOKS=I_AM_A_TEST` is set beside `POSTMAN_RETRY_CRASH_AT`, with a
/// warning on stderr. Otherwise a set `POSTMAN_RETRY_CRASH_AT` is ignored, and said to be.
final class CrashPoints: Sendable {
    /// The value of `POSTMAN_RETRY_TEST_HOOKS` that arms the hook in a debug build.
    static let armingValue = "I_AM_A_TEST"

    private let targets: [String: Int]
    private let counters = Mutex<[String: Int]>([:])

    init(environment: [String: String], warn: (String) -> Void = CrashPoints.writeToStandardError) {
        let spec = environment["POSTMAN_RETRY_CRASH_AT"] ?? ""
        var targets: [String: Int] = [:]
        #if POSTMAN_RETRY_TEST_HOOKS
            if !spec.isEmpty, environment["POSTMAN_RETRY_TEST_HOOKS"] == Self.armingValue {
                warn(
                    "postman-retry: WARNING: TEST CRASH HOOK ARMED (POSTMAN_RETRY_CRASH_AT=\(spec)): this process will SIGKILL itself on purpose; never set POSTMAN_RETRY_TEST_HOOKS outside the tests"
                )
                for item in spec.split(separator: ",") {
                    let parts = item.split(separator: ":")
                    guard let name = parts.first else { continue }
                    targets[String(name)] = parts.count > 1 ? Int(parts[1]) ?? 1 : 1
                }
            } else if !spec.isEmpty {
                warn(
                    "postman-retry: warning: POSTMAN_RETRY_CRASH_AT is ignored (a test hook, armed only with POSTMAN_RETRY_TEST_HOOKS=\(Self.armingValue))"
                )
            }
        #else
            if !spec.isEmpty {
                warn("postman-retry: warning: POSTMAN_RETRY_CRASH_AT is ignored: this build has no test hooks")
            }
        #endif
        self.targets = targets
    }

    @Sendable static func writeToStandardError(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    func reach(_ point: String) {
        guard let target = targets[point] else { return }
        let count = counters.withLock { counts -> Int in
            counts[point, default: 0] += 1
            return counts[point]!
        }
        if count == target {
            FileHandle.standardError.write(Data("postman-retry: crash point \(point) reached, killing myself\n".utf8))
            kill(getpid(), SIGKILL)
        }
    }
}
