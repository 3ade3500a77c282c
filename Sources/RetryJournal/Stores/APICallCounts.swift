import Foundation

/// HTTP requests sent, as CONTRACT.md counts them (every attempt, 429s included).
public struct APICallCounts: Sendable {
    public var retry = 0
    public var poll = 0
    public var rateLimited = 0
    /// Whole-batch retry requests (`POST …/batch/{id}/retry`).
    public var batchRetry = 0
    /// The same requests by whole second, for the report (nil: not recorded).
    public var timeline: RequestTimeline?

    public init(retry: Int = 0, poll: Int = 0, rateLimited: Int = 0, batchRetry: Int = 0, timeline: RequestTimeline? = nil) {
        self.retry = retry
        self.poll = poll
        self.rateLimited = rateLimited
        self.batchRetry = batchRetry
        self.timeline = timeline
    }

    public var isEmpty: Bool { retry + poll + rateLimited + batchRetry == 0 }

    /// Counts that could not be recorded, kept for the next write (the timeline is not merged).
    public mutating func add(_ other: APICallCounts) {
        retry += other.retry
        poll += other.poll
        rateLimited += other.rateLimited
        batchRetry += other.batchRetry
    }
}

/// One campaign's requests and 429 answers per whole second (Unix time), counted in memory and
/// flushed with the call counts.
public struct RequestTimeline: Sendable {
    public struct Second: Sendable {
        public var requests = 0
        public var rateLimited = 0
        public init() {}
    }
    public let campaign: String
    public let rateLimit: Int
    public var seconds: [Int64: Second] = [:]

    public init(campaign: String, rateLimit: Int) {
        self.campaign = campaign
        self.rateLimit = rateLimit
    }

    private static func second(_ date: Date) -> Int64 { Int64(date.timeIntervalSince1970.rounded(.down)) }
    public mutating func request(at date: Date = Date()) { seconds[Self.second(date), default: Second()].requests += 1 }
    public mutating func rateLimited(at date: Date = Date()) { seconds[Self.second(date), default: Second()].rateLimited += 1 }
    /// A request counted but not sent after all (a stop seen at the last moment).
    public mutating func cancelRequest(at date: Date = Date()) {
        let second = Self.second(date)
        if let count = seconds[second]?.requests, count > 0 {
            seconds[second]!.requests -= 1
        } else {
            seconds[second - 1]?.requests -= 1
        }
    }
    /// An empty timeline for the same campaign (after a flush).
    public var emptied: RequestTimeline { RequestTimeline(campaign: campaign, rateLimit: rateLimit) }
}
