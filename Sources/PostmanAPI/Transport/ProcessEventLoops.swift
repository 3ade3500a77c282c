import AsyncHTTPClient
import NIOCore
import NIOPosix

/// How a process that talks to Postman runs its event loops and its HTTP client; the job and
/// `retry-bench client` both use these, so the bench measures the client as the job has it.
public enum ProcessEventLoops {
    /// Call first thing in `main`, before any task starts. Swift concurrency's jobs run on NIO's event
    /// loops, where the HTTP client's I/O already is: a request no longer hops between the concurrency
    /// pool's threads and NIO's (issue 17: thread wake-ups were a quarter of the job's CPU).
    /// POSTMAN_RETRY_NIO_EXECUTOR=0 keeps the default pool (for side-by-side benchmarks). Half the cores
    /// as event loops: the job mostly waits on its rate budget and shares the machine (on two cores one
    /// loop cost 10-25% less CPU per request than two, docs/benchmarks.md); POSTMAN_RETRY_EVENT_LOOPS=N
    /// sets the number.
    public static func configure(environment: [String: String]) {
        let loops = environment["POSTMAN_RETRY_EVENT_LOOPS"].flatMap(Int.init) ?? (System.coreCount / 2)
        NIOSingletons.groupLoopCountSuggestion = max(1, loops)
        if environment["POSTMAN_RETRY_NIO_EXECUTOR"] != "0" {
            NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        }
    }
}

extension HTTPClient.Configuration {
    /// The job's client before its network settings (proxy, CA files) are applied: enough connections
    /// per host that requests are never queued inside the client (a queue there would release them in
    /// bursts), and no redirects (Postman does not redirect; following one would send a second request on
    /// one pacer slot). No tracer: the job exports no spans, and with the default no-op tracer the client
    /// still parsed every request's URL twice more to fill in a span nobody reads (3% of the job's CPU at
    /// 100 x 60, docs/benchmarks.md).
    public static var postmanRetry: HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 256)
        configuration.timeout = .init(connect: PostmanClient.timeAmount(PostmanClient.connectWait))
        configuration.redirectConfiguration = .disallow
        configuration.tracing.tracer = nil
        return configuration
    }
}
