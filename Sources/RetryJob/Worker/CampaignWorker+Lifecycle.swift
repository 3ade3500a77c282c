import Foundation
import Logging
import PostmanAPI
import RetryCore
import RetryJournal
import RetrySettings

/// Feeding each message's lifecycle and acting on what it asks for.
extension CampaignWorker {
    /// One event for one message; its outputs become journal writes, stops and batch news.
    func apply(_ id: String, _ event: MessageLifecycle.Event) {
        guard var machine = machines[id] else { return }
        let wasOver = machine.isOver
        let outputs = machine.handle(event)
        machines[id] = machine
        if !wasOver && machine.isOver { openMessages -= 1 }
        var blocked: [String] = []
        for output in outputs {
            switch output {
            case .accepted(let at, let deadline):
                accepted.append((id, Date(timeIntervalSince1970: at), Date(timeIntervalSince1970: deadline)))
                stats.accepted += 1
            case .resolved(let resolution):
                record(id, resolution)
            case .revertIntent:
                unsent.append(id)
            case .stopRun(let why):
                context.stop(.refused(why))
            case .batchBlocked(let batch):
                blocked.append(batch)
            case .unknownStatus(let status):
                logger.warning(
                    "unknown Postman status; treated as in flight", metadata: ["message_id": "\(id)", "status": "\(status)"])
                stats.unknownStatuses[id] = status
            }
        }
        // After a stop or once quiet hours began, whatever comes back to "nothing sent" (a 429, a lost
        // answer that did not land, a look that found it retryable) is left for a later run at once.
        if (released || quietHoursBegan) && machine.hasSentNothing {
            apply(id, .release)
            if quietHoursBegan { deferred.append(id) }
            return
        }
        place(id)
        for batch in blocked { blockBatch(batch) }
        // The last member of a batch to be looked at lets the batch's whole-batch check start.
        if let batch = batchOf[id], case .waiting = batchChecks[batch, default: .waiting], held[batch] != nil {
            startBatchCheckIfDue(batch)
        }
    }

    func blockBatch(_ batch: String) {
        guard blockedBatches.insert(batch).inserted else { return }
        for (id, member) in batchOf where member == batch && machines[id]?.hasSentNothing == true {
            apply(id, .batchBlocked)
        }
    }

    /// Files a message under what it needs next.
    func place(_ id: String) {
        guard let machine = machines[id] else { return }
        if machine.hasSentNothing, let batch = batchOf[id], blockedBatches.contains(batch) {
            apply(id, .batchBlocked)
            return
        }
        switch machine.need {
        case .view(let after, _):
            wantsView.insert(id)
            // A look due later needs no scan of every waiting message now, only an earlier wake-up: each
            // accepted retry used to make the next request scan them all (issue 17).
            if after > wallNow { nextViewDue = min(nextViewDue, after) } else { viewsChanged = true }
            if case .awaiting(let awaiting) = machine.phase { nextPollDeadline = min(nextPollDeadline, awaiting.endsAt) }
        case .intent:
            wantsView.remove(id)
            if holdForBatch(id) { return }
            // Reads answer in Postman's order, not the table's: the queue is put back in the table's order
            // (oldest first, CONTRACT.md section 3) before the next wave is taken from it.
            if intentQueueHead < intentQueue.count, let last = intentQueue.last, olderInTable(id, last) {
                intentQueueUnsorted = true
            }
            intentQueue.append(id)
        case .retryCall:
            wantsView.remove(id)
            if let batch = batchOf[id], case .calling = batchChecks[batch] {
                // A member of a whole-batch call (again after a 429): the batch goes, not the member.
                if queuedBatchCalls.insert(batch).inserted { batchCallQueue.append(batch) }
                return
            }
            callQueue.append(id)
        case .nothing:
            wantsView.remove(id)
        }
    }

    func record(_ id: String, _ resolution: MessageLifecycle.Resolution) {
        // A conflict is recorded by the intent transaction that found it.
        if resolution.outcome == .conflict {
            stats.conflicts += 1
            return
        }
        settled.append(
            Settlement(
                messageId: id, outcome: resolution.outcome.rawValue, result: resolution.result?.rawValue,
                update: resolution.update, lastStatus: resolution.lastStatus, postmanRetries: resolution.postmanRetries,
                newestError: resolution.newestError, httpStatus: resolution.httpStatus, postmanCode: resolution.postmanCode,
                postmanMessage: resolution.postmanMessage, unknownStatus: stats.unknownStatuses[id],
                acceptedAt: resolution.acceptedAt.map { Date(timeIntervalSince1970: $0) }))
        let key = resolution.outcome.rawValue + (resolution.result.map { "/" + $0.rawValue } ?? "")
        stats.settled[key, default: 0] += 1
    }

    /// Reads the campaign's next chunk of selected messages into memory, after forgetting the finished
    /// ones; once quiet hours began, the rest waits for the next run without being read.
    func loadNextChunk() async {
        defer {
            loadingChunk = false
            ring()
        }
        guard let cursor = nextChunk, !stopping else { return }
        do {
            if quietHoursBegan {
                deferredUnread += try await store.deferSelected(run: context.run.id, campaign: campaign, after: cursor)
                nextChunk = nil
                notYetLoaded = 0
                return
            }
            // Topped up to one chunk, not a chunk more: memory then stays at one chunk's messages however
            // long the campaign's selection is.
            let room = max(1, chunkSize - openMessages)
            let chunk = try await store.nextItems(run: context.run.id, campaign: campaign, after: cursor, limit: room)
            // A stop while the chunk was on its way: its messages stay selected for the next run.
            guard !stopping else { return }
            forgetFinished()
            nextChunk = chunk.next
            notYetLoaded = max(0, notYetLoaded - chunk.items.count)
            let wall = wallNow
            for item in chunk.items where machines[item.messageId] == nil {
                guard let machine = Self.lifecycle(of: item, policy: policy, at: wall) else { continue }
                machines[item.messageId] = machine
                if let batch = item.batchId, !batch.isEmpty { batchOf[item.messageId] = batch }
                rank[item.messageId] = nextRank
                nextRank += 1
                openMessages += 1
                if quietHoursBegan {
                    // Quiet hours began while the chunk was read: not sent, left for the next run.
                    apply(item.messageId, .release)
                    deferred.append(item.messageId)
                } else {
                    place(item.messageId)
                }
            }
            context.noteLifecycles(machines.count)
            logger.debug(
                "next chunk of the journal read", metadata: ["messages": "\(chunk.items.count)", "in_memory": "\(machines.count)"]
            )
        } catch {
            fail(error)
        }
    }

    /// Lifecycles that have ended (their settlements are already queued for the journal) leave memory,
    /// except members of a batch whose whole-batch decision is still to come or under way.
    func forgetFinished() {
        // The ids first, then the removals: removing while iterating `machines` made Swift copy the whole
        // dictionary (10 MiB at a 10,000-message chunk, seen with heaptrack), once per chunk.
        var finished: [String] = []
        for (id, machine) in machines where machine.isOver && !busy.contains(id) {
            if let batch = batchOf[id], batchRunMembers[batch] != nil {
                if case .singles = batchChecks[batch, default: .waiting] {} else { continue }
            }
            finished.append(id)
        }
        for id in finished {
            machines[id] = nil
            batchOf[id] = nil
            badBodies[id] = nil
            rank[id] = nil
            intentCheckedAt[id] = nil
        }
    }
}
