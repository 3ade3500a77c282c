import NIOCore
import NIOPosix
import Synchronization

/// `Task.sleep` on a timer of NIO's event loops. The job's tasks run on those loops (postman-retry's
/// main installs them as Swift concurrency's executor), and there `Task.sleep` still went through
/// libdispatch: its timer thread, a queue hop and a wake-up of the loop, for every sleep. The run's
/// periodic loops (the orchestrator's look every 50 ms, the hold's heartbeat) made that 13% of a
/// 3 × 2,000 run's CPU (issue 17, docs/benchmarks.md).
enum LoopTimer {
    /// Sleeps for `duration`; throws `CancellationError` when the task is cancelled, as `Task.sleep` does.
    static func sleep(for duration: Duration) async throws {
        let scheduled = schedule(in: duration) {}
        try await withTaskCancellationHandler {
            do {
                try await scheduled.futureResult.get()
            } catch {
                throw CancellationError()
            }
        } onCancel: {
            scheduled.cancel()
        }
    }

    /// Runs `task` on an event loop after `delay` (at once when it is not positive).
    @discardableResult
    static func schedule(in delay: Duration, _ task: @escaping @Sendable () -> Void) -> Scheduled<Void> {
        let (seconds, attoseconds) = delay.components
        let nanoseconds = max(0, seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        return MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: .nanoseconds(nanoseconds), task)
    }
}

/// A sleep on an event loop's timer that `ring()` ends early: the orchestrator's loop sleeps until its next
/// heartbeat or claim is due, and a campaign worker that ends rings it (the run may be complete, or a
/// lease may be taken). It used to look every 50 ms: a third of a 3 × 2,000 run's wake-ups.
final class Doorbell: Sendable {
    private struct State {
        var waiter: CheckedContinuation<Void, Never>?
        /// Rung while nobody slept: the next sleep returns at once.
        var rung = false
    }
    private let state = Mutex(State())

    func ring() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.rung = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    func sleep(until deadline: ContinuousClock.Instant) async {
        let timer = LoopTimer.schedule(in: deadline - .now) { [self] in ring() }
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool in
                if state.rung {
                    state.rung = false
                    return true
                }
                state.waiter = continuation
                return false
            }
            if now { continuation.resume() }
        }
        timer.cancel()
    }
}
