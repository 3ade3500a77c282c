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
        do {
            let result: (intents: Set<String>, conflicts: Set<String>)
            if let batcher {
                result = try await batcher.commitIntents(wave.map(\.id), witnesses: wave.map(\.witness))
            } else {
                result = try await store.commitIntents(
                    run: context.run.id, messageIds: wave.map(\.id), witnesses: wave.map(\.witness))
                context.crashPoints.reach("after-intent")
            }
            for (id, _) in wave {
                if result.intents.contains(id) {
                    apply(id, .intentCommitted)
                } else if result.conflicts.contains(id) {
                    logger.info("row changed since it was read; not retried", metadata: ["message": "\(id)"])
                    apply(id, .intentConflict)
                } else {
                    // Its journal entry moved on without this worker (writes are fenced, so it should not
                    // happen): left open for a later pass, never sent.
                    logger.warning("journal entry no longer selected; left for a later pass", metadata: ["message": "\(id)"])
                    apply(id, .release)
                }
            }
        } catch {
            fail(error)
        }
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
