import Foundation
import PostmanAPI
import RetryCore

/// Looks through one batch's list (`GET …/batch/{id}/messages`, 1,000 members a call) for its members that
/// want a look, when the campaign's list is too long to sweep for them. A called batch's members are read
/// again every few seconds while Postman may still be retrying the batch in the background, and their
/// outcomes are polled: one by one, forty members cost forty calls a round, a page of their batch one.
struct BatchLook {
    var cursor: String?
    var wanted: Set<String>
    /// The members of `wanted` that were due when it started (the others, outcomes not due yet, only ride
    /// along: no page is read for them alone).
    var due: Set<String>
    var pageInFlight = false
    var pages = 0
    /// Pages it may read before it gives up: the batch's list is longer than the reads it saves.
    let pageLimit: Int
    /// Pages that failed on the way (not 429s): the list may be what fails, while single reads work.
    var failures = 0
}

extension CampaignWorker {
    /// The next page of a look under way; after a stop none (its members that settle a call are read
    /// singly in the grace), and a page on its way ends its look when it is in.
    func nextBatchLookPage() -> WorkerAction? {
        if stopping {
            for (batch, look) in batchLooks where !look.pageInFlight { endBatchLook(batch, .gaveUp) }
            return nil
        }
        guard let (batch, look) = batchLooks.first(where: { !$0.value.pageInFlight }) else { return nil }
        batchLooks[batch]?.pageInFlight = true
        return .batchLookPage(batch: batch, after: look.cursor)
    }

    /// Starts a look when some batch has at least as many members due for a look as its list has pages (and
    /// two or more): its pages then cost no more than the single reads they replace. `due` are looks due now
    /// that a list page may give; `early` awaited outcomes not due yet ride along at no cost (they never
    /// make a look worth its pages).
    func startBatchLook(due: [String], early: [String]) -> WorkerAction? {
        guard !stopping else { return nil }
        var groups: [String: [String]] = [:]
        for id in due {
            guard let batch = batchOf[id], batchLooks[batch] == nil else { continue }
            // Once a batch's list showed a member without its batch's status, only outcomes are sought there.
            if batchListsLackStatus, !Self.isAwaiting(machines[id]?.phase) { continue }
            groups[batch, default: []].append(id)
        }
        let worth = groups.compactMap { batch, members -> (batch: String, members: [String], pages: Int)? in
            let pages = batchListPages[batch] ?? 1
            guard pages < Int.max, members.count >= max(2, pages) else { return nil }
            return (batch, members, pages)
        }
        guard let best = worth.max(by: { ($0.members.count, $1.batch) < ($1.members.count, $0.batch) }) else { return nil }
        var wanted = Set(best.members)
        for id in early where batchOf[id] == best.batch { wanted.insert(id) }
        // A batch whose length is unknown may be read as far as the members due: no more calls than their
        // single reads, however long its list turns out to be.
        let known = batchListPages[best.batch] != nil
        batchLooks[best.batch] = BatchLook(
            cursor: nil, wanted: wanted, due: Set(best.members), pageInFlight: true,
            pageLimit: known ? best.pages + 1 : best.members.count)
        return .batchLookPage(batch: best.batch, after: nil)
    }

    func onBatchLookPage(_ batch: String, _ page: PostmanPage) {
        guard var look = batchLooks[batch] else { return }
        look.pageInFlight = false
        look.pages += 1
        look.failures = 0
        let wall = wallNow
        var seen: [PostmanMessage] = []
        for message in page.messages where look.wanted.remove(message.id) != nil {
            look.due.remove(message.id)
            seen.append(message)
        }
        look.cursor = page.endCursor
        batchLooks[batch] = look
        for message in seen {
            let view = view(of: message, id: message.id, fromList: true)
            // Postman documents the batch's status for a message object and the campaign's list, not for a
            // batch's list. Without it, a member waiting for a whole-batch retry could not tell that the batch
            // is still at work (it would get a single retry on top), nor one before its retry that the batch is
            // shut: those are read singly. An outcome needs no batch status.
            if view.batchStatus == nil, !Self.isAwaiting(machines[message.id]?.phase) {
                batchListsLackStatus = true
                apply(message.id, .absentFromList(at: wall))
            } else {
                apply(message.id, .viewed(view, fromPage: true, at: wall))
            }
        }
        // Members that no longer want a look (their batch found shut, quiet hours, a deadline) are not sought.
        let stillWanted = { (id: String) -> Bool in if case .view? = self.machines[id]?.need { true } else { false } }
        batchLooks[batch]?.wanted = look.wanted.filter(stillWanted)
        batchLooks[batch]?.due = look.due.filter(stillWanted)
        if !page.hasNextPage || page.endCursor == nil {
            batchListPages[batch] = look.pages
            endBatchLook(batch, .listRead)
        } else if batchLooks[batch]?.due.isEmpty ?? true {
            endBatchLook(batch, .dueSeen)
        } else if look.pages >= look.pageLimit {
            batchListPages[batch] = Int.max
            endBatchLook(batch, .gaveUp)
        }
    }

    static func isAwaiting(_ phase: MessageLifecycle.Phase?) -> Bool {
        if case .awaiting? = phase { true } else { false }
    }

    /// A page that did not come back (`givesUpOnList`): given up, the members due are read singly and the
    /// batch's list is not used again; else the same page goes again after the backoff.
    func batchLookPageFailed(_ batch: String, _ failure: PostmanAPIError, transient: Bool) {
        batchLooks[batch]?.pageInFlight = false
        let failedBefore = batchLooks[batch]?.failures ?? 0
        if Self.givesUpOnList(failure, transient: transient, failedBefore: failedBefore) {
            batchListPages[batch] = Int.max
            endBatchLook(batch, .gaveUp)
        } else if !Self.isRateLimited(failure) {
            batchLooks[batch]?.failures += 1
        }
    }

    enum BatchLookEnd {
        /// The whole list was read: what it did not show is not in it, and is read singly.
        case listRead
        /// What was due is seen: outcomes not due yet that rode along are looked at in their own time.
        case dueSeen
        /// Given up (the list too long, failing, or a stop): what is due is read singly; outcomes not due yet
        /// that rode along are looked at in their own time, by a sweep, a look or a read.
        case gaveUp
    }

    func endBatchLook(_ batch: String, _ end: BatchLookEnd) {
        guard let look = batchLooks.removeValue(forKey: batch) else { return }
        viewsChanged = true
        let wall = wallNow
        for id in look.wanted {
            switch end {
            case .listRead: apply(id, .absentFromList(at: wall))
            case .dueSeen: break
            case .gaveUp:
                guard case .view(let after, _)? = machines[id]?.need, look.due.contains(id) || after <= wall else { continue }
                apply(id, .absentFromList(at: wall))
            }
        }
    }
}
