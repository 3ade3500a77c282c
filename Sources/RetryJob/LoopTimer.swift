import NIOCore
import NIOPosix

/// `Task.sleep` on a timer of NIO's event loops. The job's tasks run on those loops (postman-retry's
/// main installs them as Swift concurrency's executor), and there `Task.sleep` still went through
/// libdispatch: its timer thread, a queue hop and a wake-up of the loop, for every sleep. The run's
/// periodic loops (the orchestrator's look every 50 ms, the hold's heartbeat) made that 13% of a
/// 3 × 2,000 run's CPU (issue 17, docs/benchmarks.md).
enum LoopTimer {
    /// Sleeps for `duration`; throws `CancellationError` when the task is cancelled, as `Task.sleep` does.
    static func sleep(for duration: Duration) async throws {
        let (seconds, attoseconds) = duration.components
        let nanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        let scheduled = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: .nanoseconds(nanoseconds)) {}
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
}
