import Foundation
import Logging
import PostmanAPI
import RetryCore
import RetryJournal
import RetrySettings

/// Whole-batch retries: reading a batch, deciding whole or singles, committing and calling it (issue 15).
extension CampaignWorker {
    /// A ready member of a batch that may go whole waits for the decision.
    func holdForBatch(_ id: String) -> Bool {
        guard context.settings.wholeBatchRetries, let batch = batchOf[id], batchRunMembers[batch] != nil else { return false }
        switch batchChecks[batch, default: .waiting] {
        case .singles: return false
        case .calling, .committing: return false  // a member back to ready after the call: singles
        case .waiting, .reading:
            held[batch, default: []].insert(id)
            startBatchCheckIfDue(batch)
            return true
        }
    }

    /// The batch's pages are read once every run member of it has been looked at.
    func startBatchCheckIfDue(_ batch: String) {
        guard case .waiting = batchChecks[batch, default: .waiting], let members = batchRunMembers[batch] else { return }
        let looking = members.contains { id in
            switch machines[id]?.phase {
            case .unread?, .confirming?: return true
            default: return false
            }
        }
        guard !looking else { return }
        if calledBatches.contains(batch) || (held[batch]?.count ?? 0) < WholeBatch.minimumMembers {
            decideSingles(batch, why: calledBatches.contains(batch) ? "called whole before" : "too few members to retry")
            return
        }
        batchChecks[batch] = .reading(after: nil, members: [])
        batchReadQueue.append(batch)
    }

    func decideSingles(_ batch: String, why: String) {
        batchChecks[batch] = .singles
        logger.debug("batch members go by single retries", metadata: ["batch": "\(batch)", "why": "\(why)"])
        let members = held.removeValue(forKey: batch) ?? []
        for id in members { place(id) }
    }

    /// A member of a batch committed whole was found changed before the call went: the call would retry
    /// it too, so the batch goes by single retries (its row in `batch_calls` stays: never whole again).
    func decideSinglesAfterCommit(_ batch: String) {
        batchChecks[batch] = .singles
        logger.info(
            "a member's row changed before the whole-batch call; the batch goes by single retries",
            metadata: ["batch": "\(batch)"])
        // `place` queues a member waiting for its call as a single call now that the batch goes by singles.
        for id in batchRunMembers[batch] ?? [] where machines[id]?.need == .retryCall && !busy.contains(id) { place(id) }
    }

    func onBatchPage(_ batch: String, _ page: PostmanPage) {
        batchReadInFlight.remove(batch)
        guard case .reading(_, var members) = batchChecks[batch] else { return }
        for message in page.messages {
            members.append(WholeBatch.Member(id: message.id, view: view(of: message, id: message.id, fromList: true)))
        }
        if page.skippedItems > 0 {
            batchListPages[batch] = Int.max  // no looks through it either
            decideSingles(batch, why: "the batch's list had unreadable items")
            return
        }
        // Postman would already retry more members than this worker holds of the batch: the call cannot be
        // right, whatever the later pages show; and a batch far larger than a journal chunk is not read
        // whole into memory (a million-row run's incident batch of 300,000 was).
        let inMemory = batchRunMembers[batch]?.count ?? 0
        let wouldRetry = members.lazy.filter { WholeBatch.wouldRetry($0.view) }.count
        if wouldRetry > inMemory || members.count > 2 * chunkSize {
            decideSingles(batch, why: "Postman would retry more of its members than this run holds at once")
            return
        }
        if page.hasNextPage, let cursor = page.endCursor {
            batchChecks[batch] = .reading(after: cursor, members: members)
            batchReadQueue.append(batch)
            return
        }
        // Its length, for looks through it later (`BatchLook`): pages of 1,000.
        batchListPages[batch] = max(1, (members.count + 999) / 1000)
        // Dedupe by id: the list's order is not documented, and a member may show twice.
        var seen: Set<String> = []
        members = members.filter { seen.insert($0.id).inserted }
        let ready = (held[batch] ?? []).filter { if case .intent = machines[$0]?.need { true } else { false } }
        switch WholeBatch.decide(members: members, ready: ready, everCalled: calledBatches.contains(batch)) {
        case .singles(let why): decideSingles(batch, why: why)
        case .whole:
            batchChecks[batch] = .committing
            pendingBatchCommits.append(batch)
        }
    }

    /// One transaction: every member's intent with its witness, and the batch call's row.
    func commitBatch(_ batch: String) async {
        defer {
            committingBatch = false
            ring()
        }
        let members = Array(held.removeValue(forKey: batch) ?? [])
        var ids: [String] = []
        var witnesses: [Int] = []
        for id in members {
            guard case .intent(let witness)? = machines[id]?.need else { continue }
            ids.append(id)
            witnesses.append(witness)
        }
        if !stopping, !quietHoursBegan, context.settings.inQuietHours { beginQuietHours() }
        guard !stopping, !quietHoursBegan, !ids.isEmpty else {
            batchChecks[batch] = .singles
            for id in members { place(id) }
            return
        }
        do {
            let result = try await store.commitBatchIntent(
                run: context.run.id, campaign: campaign, batch: batch, messageIds: ids, witnesses: witnesses)
            context.crashPoints.reach("after-batch-intent")
            let checkedAt = now  // from the answer, as `commit` does
            batchChecks[batch] = result.whole ? .calling : .singles
            if result.whole { calledBatches.insert(batch) }
            for id in ids {
                if result.intents.contains(id) {
                    intentCheckedAt[id] = checkedAt
                    apply(id, .intentCommitted)
                } else if result.conflicts.contains(id) {
                    apply(id, .intentConflict)
                } else {
                    apply(id, .release)
                }
            }
            for id in members where !ids.contains(id) { place(id) }
        } catch {
            batchChecks[batch] = .singles
            fail(error)
        }
    }

    /// The next whole-batch call, when every member's intent is durable.
    func nextBatchCall() -> WorkerAction? {
        while !batchCallQueue.isEmpty {
            let batch = batchCallQueue.removeFirst()
            queuedBatchCalls.remove(batch)
            guard case .calling = batchChecks[batch], let members = batchRunMembers[batch] else { continue }
            let calling = members.filter { machines[$0]?.need == .retryCall && !busy.contains($0) }
            guard !calling.isEmpty else { continue }
            guard calling.allSatisfy({ intentIsFresh($0, at: now) }) else {
                // Checked again first (`recheckIntents`, started by the loop); the call waits at the front.
                batchCallQueue.insert(batch, at: 0)
                queuedBatchCalls.insert(batch)
                return nil
            }
            for id in calling {
                busy.insert(id)
                intentCheckedAt[id] = nil
            }
            context.crashPoints.reach("before-batch-call")
            return .retryBatch(batch: batch, members: calling)
        }
        return nil
    }

    /// A whole-batch call's answer, for each member. No member is taken as retried on the call's word:
    /// a 201 says only that Postman attempted the batch (which it may carry out in the background), so
    /// every member is settled by reading it (its attempt count against its witness), as a retry whose
    /// answer was lost; so is a lost answer. A 400 saying that no member was retried is settled the same
    /// way but at once, and what is still right then goes by single retries.
    func batchAnswer(_ result: Result<Void, PostmanAPIError>) -> MessageLifecycle.RetryAnswer {
        switch result {
        case .success:
            answered()
            return .attemptedAsBatch
        case .failure(let error):
            switch error.kind {
            case .http(let status) where status < 500 && status != 429:
                answered()
                if let status = error.httpStatus, MessageLifecycle.credentialRefusal(status: status, code: error.code) != nil {
                    return .refused(status: status, code: error.code, message: error.message)
                }
                return .refusedAsBatch
            default:
                let answer = retryAnswer(error)
                return answer == .lost ? .attemptedAsBatch : answer
            }
        }
    }
}
