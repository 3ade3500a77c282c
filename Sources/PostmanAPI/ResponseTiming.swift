import Synchronization

/// When the response head of a request came back: the latest instant at which Postman can have
/// received the request, known before the body is read and decoded (a list page of 1,000 messages
/// takes a while to read). A pacer that anchors requests at this instant loses less of the rate budget
/// than one that anchors them once the answer has been processed.
///
/// Bound to a task with `ResponseTiming.$current.withValue(timing) { ... }`; the client marks it.
public final class ResponseTiming: Sendable {
    @TaskLocal public static var current: ResponseTiming?

    private let instant = Mutex<ContinuousClock.Instant?>(nil)

    public init() {}

    /// When the response head arrived; nil when no response came (timeout, dropped connection).
    public var headArrivedAt: ContinuousClock.Instant? { instant.withLock { $0 } }

    func headArrived() { instant.withLock { $0 = .now } }
}
