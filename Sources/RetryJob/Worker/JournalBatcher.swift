import Foundation
import Logging
import PostmanAPI
import RetryCore
import RetryJournal
import RetrySettings
import Synchronization

/// One journal write for every campaign of a plain run (issue 17). Each worker hands its flush over and
/// waits until it is durable; whatever arrives while a write is on its way goes in the next one. So a
/// hundred campaigns cost two transactions per flush (the accepted retries, then the settlements with their
/// write-back and the call counts), not two hundred, and one idle campaign adds no wait to another's flush.
/// The order of a worker's own writes is kept: a worker has one flush at a time.
actor JournalBatcher {
    struct Part: Sendable {
        var accepted: [(id: String, at: Date, deadline: Date)]
        var settled: [Settlement]
        var calls: APICallCounts
    }

    let store: RunStore
    let run: Int64
    let crashPoints: CrashPoints
    var queue: [(part: Part, done: CheckedContinuation<Int, any Error>)] = []
    var writing = false
    var intentQueue: [(ids: [String], witnesses: [Int], done: CheckedContinuation<IntentResult, any Error>)] = []
    var committing = false
    typealias IntentResult = (intents: Set<String>, conflicts: Set<String>)

    let logger: Logger

    init(context: RunContext) {
        logger = context.logger
        var store = context.store
        store.fence = nil
        self.store = store
        run = context.run.id
        crashPoints = context.crashPoints
    }

    struct Entry: Sendable { weak var batcher: JournalBatcher? }
    static let registry = Mutex<[ObjectIdentifier: Entry]>([:])

    /// The batcher of this run's workers (alive as long as one of them is).
    static func shared(for context: RunContext) -> JournalBatcher {
        registry.withLock { entries in
            let key = ObjectIdentifier(context)
            if let batcher = entries[key]?.batcher { return batcher }
            entries = entries.filter { $0.value.batcher != nil }
            let batcher = JournalBatcher(context: context)
            entries[key] = Entry(batcher: batcher)
            return batcher
        }
    }

    /// Records one worker's flush; returns how many of its settlements met a changed row (conflicts).
    func write(_ part: Part) async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in
            queue.append((part, continuation))
            if !writing {
                writing = true
                Task { await self.drain() }
            }
        }
    }

    /// One wave's intents, committed with those of every other campaign that asked meanwhile (one
    /// transaction: each row checked as `RunStore.commitIntents` does, before any of them is called).
    /// The sets returned cover the whole transaction; a worker looks up only its own ids.
    func commitIntents(_ ids: [String], witnesses: [Int]) async throws -> IntentResult {
        try await withCheckedThrowingContinuation { continuation in
            intentQueue.append((ids, witnesses, continuation))
            if !committing {
                committing = true
                Task { await self.drainIntents() }
            }
        }
    }

    func drainIntents() async {
        while !intentQueue.isEmpty {
            let batch = intentQueue
            intentQueue = []
            do {
                let result = try await store.commitIntents(
                    run: run, messageIds: batch.flatMap(\.ids), witnesses: batch.flatMap(\.witnesses))
                crashPoints.reach("after-intent")
                for item in batch { item.done.resume(returning: result) }
            } catch {
                for item in batch { item.done.resume(throwing: error) }
            }
        }
        committing = false
    }

    func drain() async {
        while !queue.isEmpty {
            let batch = queue
            queue = []
            do {
                let conflicts = try await record(batch.map(\.part))
                for (part, done) in batch {
                    done.resume(returning: conflicts.isEmpty ? 0 : part.settled.filter { conflicts.contains($0.messageId) }.count)
                }
            } catch {
                for (_, done) in batch { done.resume(throwing: error) }
            }
        }
        writing = false
    }

    func record(_ parts: [Part]) async throws -> Set<String> {
        let accepted = parts.flatMap(\.accepted)
        if !accepted.isEmpty {
            try await store.recordAccepted(
                run: run, messageIds: accepted.map(\.id), acceptedAt: accepted.map(\.at), deadlines: accepted.map(\.deadline))
            crashPoints.reach("after-record-accepted")
        }
        let settled = parts.flatMap(\.settled)
        let calls = parts.map(\.calls)
        if settled.isEmpty {
            try await store.addCalls(run: run, calls)
            return []
        }
        crashPoints.reach("before-write-back")
        let result = try await store.settle(run: run, settled, apiCalls: calls)
        crashPoints.reach("after-write-back")
        Self.logRefusals(result, logger)
        return Set(result.conflicts)
    }

    /// Each row the agency table refused, named with PostgreSQL's reason (the report lists them too).
    static func logRefusals(_ result: Settled, _ logger: Logger) {
        for (id, error) in result.refused {
            logger.error(
                "the agency table refused the outcome; its row was left as it was",
                metadata: ["message_id": "\(id)", "database": "\(error)"])
        }
    }
}
