import Foundation
import Logging
import PostmanAPI
import RetryCore
import RetryJournal
import RetrySettings

/// Waves of intents (about one second of budget each) and quiet hours.
extension CampaignWorker {
    /// Stop or quiet hours: every message that has sent nothing is left for a later run (one with a read
    /// in flight too: what the read says is then ignored).
    func releaseUnsent() {
        released = true
        for id in Array(machines.keys) where machines[id]?.hasSentNothing == true {
            apply(id, .release)
        }
    }

    /// About one second of the campaign's budget.
    var waveSize: Int { max(1, Int(pacer.currentLimit * context.settings.waveSeconds)) }

    /// Commits the intents of the next wave (about one second of the campaign's budget) in one
    /// transaction, each with Postman's attempt count, after checking each row is still as it was read.
    func refillWave() async {
        defer {
            refilling = false
            ring()
        }
        guard !stopping, !quietHoursBegan else { return }
        if context.settings.inQuietHours {
            beginQuietHours()
            return
        }
        if intentQueueUnsorted {
            intentQueue[intentQueueHead...].sort(by: olderInTable)
            intentQueueUnsorted = false
        }
        var wave: [(id: String, witness: Int)] = []
        var seen: Set<String> = []
        while wave.count < waveSize, intentQueueHead < intentQueue.count {
            let id = intentQueue[intentQueueHead]
            intentQueueHead += 1
            guard case .intent(let witness)? = machines[id]?.need, seen.insert(id).inserted else { continue }
            wave.append((id, witness))
        }
        if intentQueueHead > 4096 {
            intentQueue.removeFirst(intentQueueHead)
            intentQueueHead = 0
        }
        guard !wave.isEmpty else { return }
        await commit(wave)
    }

    /// Commits (or commits again) the intents of `wave`: each row is checked to be as it was read, in
    /// one transaction with the intents.
    func commit(_ wave: [(id: String, witness: Int)]) async {
        do {
            let result: (intents: Set<String>, conflicts: Set<String>)
            if let batcher {
                result = try await batcher.commitIntents(wave.map(\.id), witnesses: wave.map(\.witness))
            } else {
                result = try await store.commitIntents(
                    run: context.run.id, messageIds: wave.map(\.id), witnesses: wave.map(\.witness))
                context.crashPoints.reach("after-intent")
            }
            // Timed from the answer: the check runs in the statement, after any wait in the journal batcher's
            // queue, and a commit timed from before that wait could arrive stale and be checked again and
            // again while the database is slow, with no call going out (review).
            let checkedAt = now
            var changedBatches: Set<String> = []
            for (id, _) in wave {
                if result.intents.contains(id) {
                    intentCheckedAt[id] = checkedAt
                    // A checked-again intent is already queued for its call; a message released meanwhile
                    // (a stop) has its intent reverted once more.
                    if case .intent? = machines[id]?.phase { continue }
                    apply(id, .intentCommitted)
                } else if result.conflicts.contains(id) {
                    logger.info("row changed since it was read; not retried", metadata: ["message_id": "\(id)"])
                    intentCheckedAt[id] = nil
                    apply(id, .intentConflict)
                    if let batch = batchOf[id], case .calling = batchChecks[batch] { changedBatches.insert(batch) }
                } else {
                    // Its journal entry moved on without this worker (writes are fenced, so it should not
                    // happen): left open for a later pass, never sent.
                    logger.warning("journal entry no longer selected; left for a later pass", metadata: ["message_id": "\(id)"])
                    apply(id, .release)
                }
            }
            // A whole-batch call would retry the changed member too: its batch goes by single retries.
            for batch in changedBatches { decideSinglesAfterCommit(batch) }
        } catch {
            fail(error)
        }
    }

    // MARK: - Checking an intent again just before its call

    /// An intent checked longer ago than this is checked again before its call goes: the contract checks
    /// the row "just before a retry call" (section 4), and a wave (one second of the budget) sometimes
    /// waits behind reads, a backoff or a slow heartbeat. At full pace each call goes well within it.
    static let intentFreshFor = 2.0

    func intentIsFresh(_ id: String, at t: Double) -> Bool {
        intentCheckedAt[id].map { t - $0 <= Self.intentFreshFor } ?? false
    }

    /// The intents at the front of the queues (single calls, then whole-batch calls) whose check is
    /// stale, up to a wave: calls go in queue order, so only the front is looked at.
    func staleIntentsAhead(at t: Double) -> [(id: String, witness: Int)] {
        var stale: [(id: String, witness: Int)] = []
        for id in callQueue {
            guard case .intent(let witness)? = machines[id]?.phase, !busy.contains(id) else { continue }
            if intentIsFresh(id, at: t) || stale.count >= waveSize { break }
            stale.append((id, witness))
        }
        if stale.isEmpty, let batch = batchCallQueue.first, let members = batchRunMembers[batch] {
            for id in members where !busy.contains(id) && !intentIsFresh(id, at: t) {
                if case .intent(let witness)? = machines[id]?.phase { stale.append((id, witness)) }
            }
        }
        return stale
    }

    /// Checks the rows of stale intents again (`staleIntentsAhead`); their calls wait for it.
    func recheckIntents(_ wave: [(id: String, witness: Int)]) async {
        defer {
            rechecking = false
            ring()
        }
        guard !stopping, !quietHoursBegan else { return }
        await commit(wave)
    }

    /// Quiet hours: the messages not yet retried wait for the next run; reads go on.
    func beginQuietHours() {
        let before = unsent.count
        var left: [String] = []
        for id in Array(machines.keys) where machines[id]?.hasSentNothing == true {
            apply(id, .release)
            left.append(id)
        }
        quietHoursBegan = true
        deferred.append(contentsOf: left)
        if let quiet = context.settings.quietHours {
            logger.notice(
                "quiet hours: no more retries in this run; the rest is left for the next run",
                metadata: ["quiet_hours": "\(quiet)", "left": "\(left.count)", "intents_reverted": "\(unsent.count - before)"])
        }
    }
}
