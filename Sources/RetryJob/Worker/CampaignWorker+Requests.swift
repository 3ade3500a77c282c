import Foundation
import Logging
import PostmanAPI
import RetryCore
import RetryJournal
import RetrySettings

/// Sending one request and reading its answer: retries, reads, pages, whole-batch calls.
extension CampaignWorker {
    /// Whether a retry call chosen for `ids` may still go out now that its task runs.
    func mayStillCall(_ ids: [String]) -> Bool {
        !stopping && !quietHoursBegan && leaseValid() && ids.allSatisfy { machines[$0]?.need == .retryCall }
    }

    /// A retry call chosen but not sent after all: neither a call nor a request of the campaign's, and its
    /// messages (unless something released them already) go back, or wait for the next run after quiet
    /// hours began.
    func notSentAfterAll(_ ids: [String]) {
        timeline.cancelRequest()
        requestsSent -= 1
        for id in ids where machines[id]?.hasSentNothing == true {
            apply(id, .release)
            if quietHoursBegan { deferred.append(id) }
        }
    }

    func perform(_ action: WorkerAction) async {
        let client = context.client
        switch action {
        case .retry(let id):
            // The last look before the call: nothing new goes out after a stop, a lost lease, or once
            // quiet hours began, nor for a message released while this call waited to start (its intent
            // may already be reverted: a call then would be a retry the journal does not know).
            guard mayStillCall([id]) else {
                calls.retry -= 1
                if !stopping, !quietHoursBegan, machines[id]?.need == .retryCall {
                    // Only the hold's or the lease's guard is late (a slow heartbeat): the intent stands and
                    // the call waits for the guard at the front of the queue. Released, the message would
                    // stay open to the end of the run ("messages still open", exit 75).
                    timeline.cancelRequest()
                    requestsSent -= 1
                    callQueue.insert(id, at: 0)
                    break
                }
                notSentAfterAll([id])
                break
            }
            apply(id, .callSent)
            let answer: MessageLifecycle.RetryAnswer
            do {
                let result = try await client.retryMessage(campaignId: campaign, messageId: id, apiKey: apiKey)
                context.crashPoints.reach("after-retry-call")
                answered()
                switch result {
                case .accepted(let message): answer = .accepted(latestStatus: message?.latestStatus)
                }
            } catch {
                answer = retryAnswer(Self.apiError(error))
            }
            apply(id, .callAnswered(answer, at: wallNow))
        case .read(let id):
            do {
                let message = try await client.getMessage(campaignId: campaign, messageId: id, apiKey: apiKey)
                answered()
                apply(id, .viewed(view(of: message, id: id, fromList: false), fromPage: false, at: wallNow))
            } catch {
                let failure = Self.apiError(error)
                if case .http(404) = failure.kind {
                    answered()
                    apply(id, .readNotFound(code: failure.code, at: wallNow))
                } else if case .badResponse(let status) = failure.kind, noteBadBody(id) {
                    // The same message object unreadable again and again: named, and ended by its lifecycle
                    // (never retried blind), not read forever.
                    logger.warning(
                        "Postman's message object cannot be read", metadata: ["message_id": "\(id)", "error": "\(failure)"])
                    apply(id, .readRefused(status: status, code: "unreadable_message_object", at: wallNow))
                } else if !handleTransient(failure), let status = failure.httpStatus {
                    answered()
                    logger.warning("unexpected answer to a read", metadata: ["message_id": "\(id)", "error": "\(failure)"])
                    apply(id, .readRefused(status: status, code: failure.code, at: wallNow))
                }
            }
        case .batchPage(let batch, let cursor):
            do {
                let page = try await client.listBatchMessages(
                    campaignId: campaign, batchId: batch, limit: 1000, after: cursor, apiKey: apiKey)
                answered()
                onBatchPage(batch, page)
            } catch {
                let failure = Self.apiError(error)
                batchReadInFlight.remove(batch)
                let transient = handleTransient(failure)
                if !transient { stopIfCredentialsRefused(failure) }
                if Self.givesUpOnList(failure, transient: transient, failedBefore: batchCheckFailures.contains(batch) ? 1 : 0) {
                    batchListPages[batch] = Int.max  // no looks through it either
                    decideSingles(batch, why: "the batch's list answered \(failure)")
                } else {
                    if !Self.isRateLimited(failure) { batchCheckFailures.insert(batch) }
                    batchReadQueue.append(batch)
                }
            }
        case .batchLookPage(let batch, let cursor):
            do {
                let page = try await client.listBatchMessages(
                    campaignId: campaign, batchId: batch, limit: 1000, after: cursor, apiKey: apiKey)
                answered()
                onBatchLookPage(batch, page)
            } catch {
                let failure = Self.apiError(error)
                let transient = handleTransient(failure)
                if !transient { stopIfCredentialsRefused(failure) }
                batchLookPageFailed(batch, failure, transient: transient)
            }
        case .retryBatch(let batch, let members):
            // Durable before the call: a restart then knows the call may have gone out (its members wait for
            // Postman's background batch retry) or certainly did not.
            let dispatched = now
            do { try await store.markBatchSent(campaign: campaign, batch: batch) } catch {
                calls.batchRetry -= 1
                fail(error)
                notSentAfterAll(members)
                break
            }
            // A mark held up (behind the journal's flushes, a lock) leaves the rows' check and the pacer's slot
            // behind the call: it waits its turn again, its rows checked again first. Once: a database that is
            // always this slow still gets the call out.
            let markWasSlow = now - dispatched > Self.slowBatchMark && slowBatchMarks.insert(batch).inserted
            guard mayStillCall(members), !markWasSlow else {
                calls.batchRetry -= 1
                if !stopping, !quietHoursBegan, members.allSatisfy({ machines[$0]?.need == .retryCall }) {
                    // Only the hold's or the lease's guard is late (a slow heartbeat), or the mark was: as for a
                    // single call, the intents stand and the call waits at the front. Released, its members stayed open to
                    // the end of the run ("messages still open", exit 75).
                    timeline.cancelRequest()
                    requestsSent -= 1
                    if queuedBatchCalls.insert(batch).inserted { batchCallQueue.insert(batch, at: 0) }
                    break
                }
                notSentAfterAll(members)
                break
            }
            for id in members { apply(id, .callSent) }
            let result: Result<Void, PostmanAPIError>
            do {
                try await client.retryBatch(campaignId: campaign, batchId: batch, apiKey: apiKey)
                context.crashPoints.reach("after-batch-call")
                result = .success(())
            } catch {
                result = .failure(Self.apiError(error))
            }
            let answer = batchAnswer(result)
            if case .rateLimited = answer {
            } else if case .notSent = answer {
            } else {
                batchChecks[batch] = .singles  // whatever its members need now goes by single retries
                let failure = if case .failure(let error) = result { error } else { nil as PostmanAPIError? }
                logger.info(
                    "whole-batch retry",
                    metadata: [
                        "batch": "\(batch)", "members": "\(members.count)",
                        "answer": "\(failure.map { "\($0)" } ?? "201")"
                    ])
                // A lost answer has no status: recorded as such, not as a 201.
                let status = failure == nil ? 201 : failure?.httpStatus
                let code = failure.map { $0.httpStatus == nil ? ($0.code ?? "answer_lost") : $0.code } ?? nil
                do { try await store.recordBatchAnswer(campaign: campaign, batch: batch, httpStatus: status, code: code) } catch {
                    fail(error)
                }
            }
            let at = wallNow
            for id in members { apply(id, .callAnswered(answer, at: at)) }
        case .listPage(let cursor):
            do {
                let page = try await listPage(after: cursor)
                answered()
                onPage(page)
            } catch {
                let failure = Self.apiError(error)
                sweepPageInFlight = false
                if handleTransient(failure) {
                    sweepPageFailed(failure)
                } else {
                    stopIfCredentialsRefused(failure)
                    sweepRefused()
                }
            }
        }
        inFlight -= 1
        // Every answer to a call reached the lifecycles, and `place` marked what fell due: no scan of every
        // waiting message for each retry (issue 17). A read that failed on the way leaves its message wanting
        // a look without a new event, so reads and pages mark the views changed.
        switch action {
        case .retry(let id): busy.remove(id)
        case .retryBatch(_, let members): for id in members { busy.remove(id) }
        case .read(let id):
            busy.remove(id)
            viewsChanged = true
        case .listPage, .batchPage, .batchLookPage: viewsChanged = true
        }
        ring()
    }

    /// A page of the campaign's list in which only what this sweep wants is decoded whole (a snapshot: a
    /// sweep's wants only shrink). The snapshot ends with this call, so `onPage` changes the wants in place.
    func listPage(after cursor: String?) async throws -> PostmanPage {
        let wanted = sweepWanted
        return try await context.client.listCampaignMessages(
            campaignId: campaign, limit: 1000, after: cursor, apiKey: apiKey, fullyDecoding: { wanted.contains($0) })
    }

    func noteBadBody(_ id: String) -> Bool {
        badBodies[id, default: 0] += 1
        if badBodies[id]! < 2 {
            noteFailure(PostmanAPIError(kind: .badResponse(status: 200), message: "unreadable message object"))
            return false
        }
        answered()
        return true
    }

    /// A failed retry call, as the lifecycle understands it.
    func retryAnswer(_ error: PostmanAPIError) -> MessageLifecycle.RetryAnswer {
        switch error.kind {
        case .http(429):
            noteRateLimited(error)
            return .rateLimited
        case .http(let status) where status < 500:
            answered()
            return .refused(status: status, code: error.code, message: error.message)
        default:
            noteFailure(error)
            return error.mayHaveReachedServer ? .lost : .notSent
        }
    }

    /// A 429: Postman answered (so the connection is fine), the campaign's budget is spent: counted, the
    /// pacer cuts its rate, and Retry-After is honoured.
    func noteRateLimited(_ error: PostmanAPIError) {
        answered()
        calls.rateLimited += 1
        timeline.rateLimited()
        pacer.recordRateLimited(at: now)
        honourRetryAfter(error)
    }

    static func apiError(_ error: any Error) -> PostmanAPIError {
        if let error = error as? PostmanAPIError { return error }
        return PostmanAPIError(kind: .connection, message: "\(type(of: error))")
    }

    /// The pacer anchors the request at its response head when there was one (Postman had it by then),
    /// else now (the failure was noticed now: by its deadline a request has arrived or never will).
    func answered(ticket: Int, headArrivedAt: ContinuousClock.Instant?) {
        pacer.recordAnswer(ticket: ticket, at: headArrivedAt.map { ($0 - origin).seconds } ?? now)
    }

    func answered() {
        lastAnswer = now
        let ticket = Self.requestTicket ?? Int.max
        // A late answer to a request sent before ones that failed since says nothing of the server now.
        if ticket > lastFailedTicket { consecutiveFailures = 0 }
        lastAnsweredTicket = max(lastAnsweredTicket, Self.requestTicket ?? 0)
        noteOutcome(failed: false)
    }

    func noteOutcome(failed: Bool) {
        recentFailures.append(failed)
        if recentFailures.count > Self.recentOutcomesKept { recentFailures.removeFirst() }
    }

    /// 429 / 5xx / timeout / dropped connection / bad body: back off; the look is simply taken again
    /// later. Returns false for a 4xx (the caller hands it to the lifecycle).
    /// A 4xx that refuses the key or the source IP stops the run (exit 77), whatever the request was.
    func stopIfCredentialsRefused(_ failure: PostmanAPIError) {
        if let status = failure.httpStatus, let stop = MessageLifecycle.credentialRefusal(status: status, code: failure.code) {
            context.stop(.refused(stop))
        }
    }

    /// Whether a page of a batch's list that did not come back ends its use (the whole-batch check's and
    /// the looks' rule): a 429 waits its turn; a refusal or an unreadable body ends it at once; any other
    /// failure is tried once more. A list that times out held its members back until the run stopped as if
    /// Postman were unreachable.
    static func givesUpOnList(_ failure: PostmanAPIError, transient: Bool, failedBefore: Int) -> Bool {
        if isRateLimited(failure) { return false }
        if !transient { return true }
        if case .badResponse = failure.kind { return true }
        return failedBefore >= 1
    }

    static func isRateLimited(_ failure: PostmanAPIError) -> Bool {
        if case .http(429) = failure.kind { true } else { false }
    }

    func handleTransient(_ error: PostmanAPIError) -> Bool {
        switch error.kind {
        case .http(429):
            noteRateLimited(error)
            return true
        case .http(let status) where status < 500:
            return false
        default:
            noteFailure(error)
            return true
        }
    }

    func honourRetryAfter(_ error: PostmanAPIError) {
        if let wait = error.retryAfter { backoffUntil = max(backoffUntil, now + wait.seconds) }
    }

    func noteFailure(_ error: PostmanAPIError) {
        // Failures are in a row by send order, not by when they were noticed: requests sent together that
        // time out together, after later ones were answered, are not a server gone quiet. Counted in the
        // order noticed, three slow answers in ten (a 5 s timeout) made eight "in a row" and a 20 s backoff.
        // Excused only while most requests are answered: a server that fails half of them or more is
        // degraded, and the backoff grows as for failures in a row (a review: at 50% timeouts every failure
        // was excused, 332 sends in two minutes against 81).
        // A round is what was on its way when a failure was noticed: its other failures do not grow the backoff
        // again (a burst of ten reads failing 503 together went to a 16 s backoff at once, and a Postman that was
        // down for good was called unreachable only after that).
        let ticket = Self.requestTicket ?? Int.max
        noteOutcome(failed: true)
        let failedShare = Double(recentFailures.filter { $0 }.count) / Double(recentFailures.count)
        if ticket <= failureRoundEnd {
            consecutiveFailures = max(consecutiveFailures, 1)
        } else {
            // A new round: it ends with what is on its way now (a later failure of the old round must not
            // move that end past requests sent after this failure was noticed).
            failureRoundEnd = lastIssuedTicket
            if ticket < lastAnsweredTicket, failedShare < 0.5 {
                consecutiveFailures = max(consecutiveFailures, 1)
            } else {
                consecutiveFailures += 1
            }
        }
        lastFailedTicket = max(lastFailedTicket, Self.requestTicket ?? 0)
        stats.transientErrors += 1
        backoffUntil = max(
            backoffUntil, now + backoff.delay(attempt: consecutiveFailures, unit: Double.random(in: 0..<1, using: &rng)))
        logger.debug("transient Postman error; backing off", metadata: ["error": "\(error)"])
        if now - lastAnswer > context.settings.unreachableAfter.seconds {
            context.stop(
                .unreachable(
                    "\(context.settings.apiURL), campaign \(campaign): no answer for \(Int(now - lastAnswer)) s; last error: \(error)"
                ))
        }
    }
}
