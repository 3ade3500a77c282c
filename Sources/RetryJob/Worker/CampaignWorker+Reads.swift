import Foundation
import Logging
import PostmanAPI
import RetryCore
import RetryJournal
import RetrySettings

/// Choosing the next request: reads before retries, list sweeps or single reads by cost.
extension CampaignWorker {
    /// What to send next: reads first (a lost answer is settled before anything else is sent for it,
    /// and no message is retried before Postman's state is known), then the next retry of the wave.
    func nextAction(at t: Double) -> WorkerAction? {
        // Checked at the start (nothing is read for messages that will not be sent anyway) and before
        // each retry, not only when a wave is committed: a wave ready when quiet hours begin is not sent.
        if !quietHoursChecked {
            quietHoursChecked = true
            if !stopping, context.settings.inQuietHours { beginQuietHours() }
        }
        if !stopping, let batch = batchReadQueue.first, !batchReadInFlight.contains(batch),
            case .reading(let after, _) = batchChecks[batch]
        {
            batchReadQueue.removeFirst()
            batchReadInFlight.insert(batch)
            return .batchPage(batch: batch, after: after)
        }
        if let read = nextRead() { return read }
        if stopping || quietHoursBegan { return nil }
        // Whole-batch calls too: a batch call sends as many SMS as its members.
        if !callQueue.isEmpty || !batchCallQueue.isEmpty, context.settings.inQuietHours {
            beginQuietHours()
            return nil
        }
        if let call = nextBatchCall() { return call }
        while let id = callQueue.first {
            guard machines[id]?.need == .retryCall, !busy.contains(id) else {
                callQueue.removeFirst()
                continue
            }
            // Its row was checked too long ago: checked again first (`recheckIntents`, started by the loop).
            guard intentIsFresh(id, at: t) else { return nil }
            callQueue.removeFirst()
            intentCheckedAt[id] = nil
            busy.insert(id)
            context.crashPoints.reach("before-retry-call")
            return .retry(id)
        }
        return nil
    }

    /// The read due first; among reads due together (every unread message is due at once), the oldest row
    /// first, so that messages become ready, and are retried, in the table's order (CONTRACT.md section 3).
    func firstToRead(_ a: (id: String, due: Double), _ b: (id: String, due: Double)) -> Bool {
        if a.due != b.due { return a.due < b.due }
        return olderInTable(a.id, b.id)
    }

    /// Whether `a` came before `b` in the journal's order (oldest first); one not ranked comes last.
    func olderInTable(_ a: String, _ b: String) -> Bool { (rank[a] ?? .max) < (rank[b] ?? .max) }

    /// A sweep's page is on its way and, until it is in, `nextRead` sends nothing (after a stop it does).
    var readsWaitForPage: Bool { sweepActive && sweepPageInFlight && !stopping }

    /// Chooses between a list sweep and single reads, by which needs fewer calls for the looks due.
    func nextRead() -> WorkerAction? {
        if sweepActive {
            if !stopping {
                guard !sweepPageInFlight else { return nil }
                sweepPageInFlight = true
                return .listPage(after: sweepCursor)
            }
            // After a stop no more pages go: the messages the sweep still wants are read one by one in
            // the grace (a lost answer among them is settled now, not left to the next run). A page on
            // its way still shows its own; the sweep ends when it is in.
            if !sweepPageInFlight { endSweep() }
        }
        if let page = nextBatchLookPage() { return page }
        let wall = wallNow
        // Nothing changed and nothing falls due yet: no scan of every message (most of the job's CPU).
        if !viewsChanged, !stopping, wall < nextViewDue { return nil }
        viewsChanged = false
        var singles: [(id: String, due: Double)] = []
        var pageable: [String] = []
        /// Awaited outcomes not due yet: a sweep that goes anyway shows them too, at no extra cost.
        var early: [String] = []
        var soonest = Double.infinity
        for id in wantsView where !busy.contains(id) && !sweepWanted.contains(id) {
            guard let machine = machines[id], case .view(let after, let singleOnly) = machine.need else { continue }
            // After a stop only the reads that settle a call are sent.
            if stopping && !Self.settlesACall(machine.phase) { continue }
            // Sought by a look through its batch's list, or waiting for it to end to be sought by the next
            // (its page's answer rings the loop and marks the views changed).
            if !batchLooks.isEmpty, let batch = batchOf[id], let look = batchLooks[batch],
                look.wanted.contains(id)
                    || (!(singleOnly || stopping || nearDeadline(machine.phase, wall: wall))
                        && (!batchListsLackStatus || Self.isAwaiting(machine.phase)))
            {
                continue
            }
            if after > wall {
                soonest = min(soonest, after)
                if !singleOnly, case .awaiting = machine.phase { early.append(id) }
                continue
            }
            if singleOnly || stopping || nearDeadline(machine.phase, wall: wall) {
                singles.append((id, after))
            } else {
                pageable.append(id)
            }
        }
        nextViewDue = soonest
        // A sweep when its pages cost less than one read for each message it would show; then the
        // messages it will cover wait for it rather than trickle out as single reads.
        let coverable = pageable.count + early.count
        if !pageable.isEmpty && coverable >= pagesEstimate && coverable > 1 && now >= sweepsPausedUntil {
            // Looks through batches' lists under way end first (a few pages at most): their members are
            // not in this sweep's wants, and would wait behind its pages.
            let sweepAllowedIn = lastSweepEnd + sweepInterval - now
            guard sweepAllowedIn <= 0, batchLooks.isEmpty else {
                // A sweep is due soon and will cover these; single reads now would cost more. Look again
                // when it may start (at most a quarter second on: the interval shrinks when retries end), or
                // when the looks' pages come in (their answers ring).
                if sweepAllowedIn > 0 { nextViewDue = min(nextViewDue, wall + min(0.25, sweepAllowedIn)) }
                guard let id = singles.min(by: firstToRead)?.id else { return nil }
                if singles.count > 1 { viewsChanged = true }
                busy.insert(id)
                return .read(id)
            }
            sweepActive = true
            sweepPageInFlight = true
            sweepPageFailures = 0
            sweepStartedAt = startCursor
            sweepCursor = startCursor
            sweepPages = 0
            sweepHit = false
            sweepSkippedPages = 0
            sweepSkipCursor = startCursor
            sweepWanted = Set(pageable).union(early)
            return .listPage(after: startCursor)
        }
        // Too few for a sweep of the campaign's list; maybe enough for one batch's.
        if !pageable.isEmpty, let look = startBatchLook(due: pageable, early: early) {
            viewsChanged = true
            return look
        }
        let next = singles.min(by: firstToRead)?.id ?? pageable.min(by: olderInTable)
        guard let id = next else { return nil }
        // More were due than this one read: the next slot scans again.
        if singles.count + pageable.count > 1 { viewsChanged = true }
        busy.insert(id)
        return .read(id)
    }

    /// An awaited outcome whose poll deadline comes before the next sweep could start: read it singly.
    func nearDeadline(_ phase: MessageLifecycle.Phase, wall: Double) -> Bool {
        // Restored past its deadline, it needs one look, which a list page gives as well as a read (a
        // resumed run's thousands of them went one read each).
        guard case .awaiting(let a) = phase, !a.mustLookOnce else { return false }
        return a.deadline - wall < max(1, lastSweepEnd + sweepInterval - now)
    }

    /// Time between list sweeps. While retries remain, sweeps take at most about 2.5% of the campaign's
    /// budget (a slow campaign's slots are its retries' floor); once only outcomes are awaited, they come
    /// as soon as the first outcomes can be in.
    var sweepInterval: Double {
        let firstPoll = context.settings.firstPollDelay.seconds
        let retriesLeft = intentQueueHead < intentQueue.count || !callQueue.isEmpty || !batchCallQueue.isEmpty
        guard retriesLeft else { return firstPoll }
        return max(firstPoll, Double(pagesEstimate) / (0.025 * pacer.currentLimit))
    }

    /// What a message object shows, for the lifecycle; the batch status is that of the row's batch. A list
    /// item (`fromList`) with a count but no attempt history (`numAttempts` alone) shows no count: it cannot
    /// tell the newest error, so a single read decides instead (a final `failure` was written with no code).
    func view(of message: PostmanMessage, id: String, fromList: Bool) -> PostmanView {
        let batch = batchOf[id]
        let ref = message.batches.first { $0.id == batch && $0.status != nil } ?? message.batches.first { $0.status != nil }
        return PostmanView(
            latestStatus: message.latestStatus, attempts: fromList && message.attempts == nil ? nil : message.attemptCount,
            newestError: message.newestErrorCode, batchStatus: ref?.status)
    }

    /// A sweep page that did not come back (a 429 waits its turn): the same page is tried again after the
    /// backoff, up to three times in a row; then the sweep is given up and its messages wait for the next
    /// one (from the list's beginning, if it started from a remembered cursor). After two given up in a row
    /// (no sweep finished between), sweeps pause for a minute and every look is a single read meanwhile.
    /// While nothing else answers (reads wait for the sweep), at half the time after which the run would stop
    /// as if Postman were unreachable, sweeps pause at once: the single reads then show whether it is.
    func sweepPageFailed(_ failure: PostmanAPIError) {
        if Self.isRateLimited(failure) { return }
        sweepPageFailures += 1
        let starved = now - lastAnswer > context.settings.unreachableAfter.seconds / 2
        guard sweepPageFailures >= 3 || starved else { return }
        sweepPageFailures = 0
        let waiting = sweepWanted.count
        dropSweep()
        if sweepStartedAt != nil { startCursor = nil }  // the remembered cursor may be what fails
        abandonedSweeps += 1
        guard abandonedSweeps >= 2 || starved else {
            logger.warning("the campaign's list failed three times in a row; its messages wait for the next sweep")
            return
        }
        abandonedSweeps = 0
        // Its messages are not marked missing: read one by one while sweeps pause (they fall to single reads
        // by themselves), they may still join a sweep when the pause ends.
        sweepsPausedUntil = now + Self.sweepPause
        logger.warning(
            "the campaign's list keeps failing; its messages are read one by one for a while",
            metadata: ["seconds": "\(Int(Self.sweepPause))", "waiting": "\(waiting)"])
    }

    func onPage(_ page: PostmanPage) {
        sweepPageInFlight = false
        sweepPageFailures = 0
        sweepPages += 1
        let wall = wallNow
        var ours = 0
        // Any message of this run (wanted by this sweep or not) marks where the run's messages begin.
        for id in page.otherIds where machines[id] != nil { ours += 1 }
        for message in page.messages {
            if machines[message.id] != nil { ours += 1 }
            guard sweepWanted.remove(message.id) != nil else { continue }
            apply(message.id, .viewed(view(of: message, id: message.id, fromList: true), fromPage: true, at: wall))
        }
        if ours == 0 && !sweepHit {
            // Older history before this run's messages: later sweeps can start after it.
            sweepSkipCursor = page.endCursor ?? sweepSkipCursor
            sweepSkippedPages += 1
        } else if ours > 0 {
            sweepHit = true
        }
        if page.skippedItems > 0 {
            logger.warning("list page items without id or latestStatus skipped", metadata: ["count": "\(page.skippedItems)"])
        }
        sweepCursor = page.endCursor
        if !page.hasNextPage || sweepWanted.isEmpty || page.endCursor == nil {
            abandonedSweeps = 0  // a sweep that finished: the list works
            endSweep()
        }
    }

    /// The campaign's list refused a page (a 4xx other than the key's). From a remembered cursor, the cursor
    /// may be what it refused: the next sweep starts from the beginning. Else sweeps pause for a while, and
    /// those who wanted a look fall to single reads meanwhile. Nothing else is learnt from a walk cut short:
    /// taken as the list's length, it made the next sweep look cheap, and every sweep interval then cost
    /// another refused call.
    func sweepRefused() {
        if sweepStartedAt != nil { startCursor = nil } else { sweepsPausedUntil = now + Self.sweepPause }
        dropSweep()
    }

    /// Ends a sweep that was given up or refused: its messages are not marked missing (nothing was learnt
    /// of them) and are scanned again, for single reads, a look, or a later sweep.
    func dropSweep() {
        sweepActive = false
        sweepPageInFlight = false
        lastSweepEnd = now
        sweepWanted = []
        viewsChanged = true
    }

    func endSweep() {
        sweepActive = false
        sweepPageInFlight = false
        lastSweepEnd = now
        let startedAt = sweepStartedAt
        if sweepHit {
            startCursor = sweepSkipCursor
            // Later sweeps start after the skipped history: their cost is the pages from there on (the whole
            // walk's count made every poll a single read once a campaign had months of history).
            pagesEstimate = max(1, sweepPages - sweepSkippedPages)
        } else {
            pagesEstimate = max(1, sweepPages)
        }
        let missing = sweepWanted
        sweepWanted = []
        if startedAt != nil, missing.count > pagesEstimate {
            // The list's order is not documented: many messages not seen after the remembered cursor means it
            // does not mark where this run's messages begin. The next sweep starts from the beginning.
            startCursor = nil
            logger.debug(
                "list sweep from a remembered cursor missed messages; next sweep from the start",
                metadata: ["missed": "\(missing.count)"])
            return
        }
        // Those the list did not show are read one by one.
        let wall = wallNow
        for id in missing { apply(id, .absentFromList(at: wall)) }
    }
}
