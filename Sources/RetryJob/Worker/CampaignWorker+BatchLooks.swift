import Foundation
import PostmanAPI
import RetryCore

/// Looks through one batch's list (`GET …/batch/{id}/messages`, 1,000 members a call) for its members that
/// want a look, when the campaign's list is too long to sweep for them. A called batch's members are read
/// again every few seconds while Postman may still be retrying the batch in the background, and their
/// outcomes are polled: one by one, forty members cost forty calls a round, a page of their batch one.
struct BatchLook {
    let batch: String
    var cursor: String?
    var wanted: Set<String>
    var pageInFlight = false
    var pages = 0
    /// Pages it may read before it gives up: the batch's list is longer than the reads it saves.
    let pageLimit: Int
}

extension CampaignWorker {
    /// The next page of the look under way; after a stop none (its members that settle a call are read
    /// singly in the grace), and a page on its way ends it when it is in.
    func nextBatchLookPage() -> WorkerAction? {
        guard var look = batchLook, !look.pageInFlight else { return nil }
        if stopping {
            endBatchLook()
            return nil
        }
        look.pageInFlight = true
        batchLook = look
        return .batchLookPage(batch: look.batch, after: look.cursor)
    }

    /// Starts a look when some batch has at least as many members wanting a look as its list has pages (and
    /// two or more): then its pages cost no more than the single reads they replace. `due` are looks due
    /// now that a list page may give; `early` awaited outcomes not due yet, which a page shows at no cost.
    func startBatchLook(due: [String], early: [String]) -> WorkerAction? {
        guard batchLook == nil, !stopping else { return nil }
        var groups: [String: [String]] = [:]
        for id in due { if let batch = batchOf[id] { groups[batch, default: []].append(id) } }
        guard !groups.isEmpty else { return nil }
        for id in early { if let batch = batchOf[id], groups[batch] != nil { groups[batch]!.append(id) } }
        let worth = groups.compactMap { batch, members -> (batch: String, members: [String], pages: Int)? in
            let pages = batchListPages[batch] ?? 1
            guard pages < Int.max, members.count >= max(2, pages) else { return nil }
            return (batch, members, pages)
        }
        guard let best = worth.max(by: { ($0.members.count, $1.batch) < ($1.members.count, $0.batch) }) else { return nil }
        // A batch whose length is unknown may be read as far as the members sought: no more calls than their
        // single reads, however long its list turns out to be.
        let known = batchListPages[best.batch] != nil
        batchLook = BatchLook(
            batch: best.batch, cursor: nil, wanted: Set(best.members), pageInFlight: true,
            pageLimit: known ? best.pages + 1 : best.members.count)
        return .batchLookPage(batch: best.batch, after: nil)
    }

    func onBatchLookPage(_ batch: String, _ page: PostmanPage) {
        guard var look = batchLook, look.batch == batch else { return }
        look.pageInFlight = false
        look.pages += 1
        let wall = wallNow
        var seen: [PostmanMessage] = []
        for message in page.messages where look.wanted.remove(message.id) != nil { seen.append(message) }
        look.cursor = page.endCursor
        batchLook = look
        for message in seen { apply(message.id, .viewed(view(of: message, id: message.id), fromPage: true, at: wall)) }
        if !page.hasNextPage || page.endCursor == nil {
            batchListPages[batch] = look.pages
            endBatchLook()
        } else if look.wanted.isEmpty {
            endBatchLook()
        } else if look.pages >= look.pageLimit {
            batchListPages[batch] = Int.max
            endBatchLook()
        }
    }

    /// The batch's list refused (a 4xx other than the key's): its members are read singly from now on.
    func batchLookRefused(_ batch: String) {
        batchListPages[batch] = Int.max
        if batchLook?.batch == batch { endBatchLook() }
    }

    /// Members the look did not find are read one by one, as those a campaign sweep missed.
    func endBatchLook() {
        guard let look = batchLook else { return }
        batchLook = nil
        viewsChanged = true
        let wall = wallNow
        for id in look.wanted { apply(id, .absentFromList(at: wall)) }
    }
}
