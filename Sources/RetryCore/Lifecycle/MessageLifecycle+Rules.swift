// The rules the transitions apply: which refusals stop the run, what Postman's state before a call
// decides, how an answer (or a lost one) is settled and what the row is set to.
// The helpers the transition table calls are internal, not private: it is in another file.
extension MessageLifecycle {
    /// Refusal codes that mean the key or the source IP was refused, whatever the HTTP status.
    public static let credentialRefusalCodes: Set<String> = [
        "invalid_api_key_provided", "invalid_ip_address_error", "invalid_ip_address_used", "authentication_required"
    ]

    public static func credentialRefusal(status: Int, code: String?) -> String? {
        if status == 401 || status == 403 || (code.map(credentialRefusalCodes.contains) ?? false) {
            return "HTTP \(status)\(code.map { " \($0)" } ?? "")"
        }
        return nil
    }

    public static let retryableBatchStatuses: Set<String> = ["messages_enqueued", "messages_enqueuing_failed"]

    /// Postman's state before any call: what it already shows final, exhausted or blocked is settled
    /// without a retry call; a message in `failure` with retries left gets an intent with its count.
    mutating func learnBeforeRetry(_ view: PostmanView, fromPage: Bool) -> [Output] {
        var outputs = note(view)
        if view.latestStatus != "failure" {
            outputs += resolve(.reconciled, update: reconciledUpdate(view), view: view)
            return outputs
        }
        guard let attempts = view.attempts else {
            if fromPage {
                phase = .confirming(refusals: 0)
                return outputs
            }
            return outputs
                + resolve(
                    .rejected, message: "Postman showed no attempt history, so a lost answer could not be settled; not retried",
                    view: view)
        }
        if attempts - 1 >= SelectionRules.retryLimit {
            return outputs
                + resolve(.exhausted, update: FinalState.exhausted, code: "too_many_message_attempts_error", view: view)
        }
        if let status = view.batchStatus, !Self.retryableBatchStatuses.contains(status) {
            if let batch = row.batchId { outputs.append(.batchBlocked(batch)) }
            return outputs + resolve(.batchNotRetryable, code: "batch_not_found_or_is_not_retryable", view: view)
        }
        phase = .ready(witness: attempts)
        return outputs
    }

    mutating func answered(_ answer: RetryAnswer, witness: Int, at: Double) -> [Output] {
        switch answer {
        case .accepted(let status):
            lastStatus = status ?? "created"
            return accept(at: at, witness: witness)
        case .rateLimited, .notSent:
            // Dropped, not queued, by Postman (or never sent): the same intent goes out again.
            phase = .intent(witness: witness)
            return []
        case .lost, .attemptedAsBatch, .refusedAsBatch:
            hadLostAnswer = true
            if answer == .attemptedAsBatch { batchCallAt = at }
            phase = .unsettled(witness: witness, readAfter: at + policy.settleDelay, refusals: 0, singleOnly: false)
            return []
        case .refused(let status, let code, let message):
            if let stop = Self.credentialRefusal(status: status, code: code) {
                // The refused call is not a retry; nothing more is sent, the intent goes back.
                phase = .released
                return [.revertIntent, .stopRun(stop)]
            }
            switch code {
            case "message_not_found_or_retry_message_not_in_failure_status":
                // A call of ours whose answer was lost may have landed late and made this one fail.
                phase = .reconciling(witness: witness, ourCallMayHaveLanded: hadLostAnswer, refusals: 0)
                return []
            case "too_many_message_attempts_error":
                return resolve(.exhausted, update: FinalState.exhausted, httpStatus: status, code: code)
            case "batch_not_found_or_is_not_retryable":
                return (row.batchId.map { [.batchBlocked($0)] } ?? [])
                    + resolve(.batchNotRetryable, httpStatus: status, code: code)
            default:
                return resolve(.rejected, httpStatus: status, code: code, message: message.map { String($0.prefix(500)) })
            }
        }
    }

    /// A read after a lost answer: more attempts than the witness means the call landed.
    mutating func settle(_ view: PostmanView, witness: Int, fromPage: Bool, at: Double) -> [Output] {
        guard let attempts = view.attempts else {
            if fromPage {
                phase = .unsettled(witness: witness, readAfter: at, refusals: 0, singleOnly: true)
                return note(view)
            }
            // No witness to compare: never a second call; the row follows what Postman shows.
            return note(view) + resolve(.reconciled, update: reconciledUpdate(view), view: view)
        }
        if attempts > witness {
            // A batch call's member: accepted when the call was answered, not when a read first showed it.
            return acceptedAfterAll(view, witness: witness, at: at, acceptedAt: min(batchCallAt ?? at, at))
        }
        if mayStillBeRetriedByItsBatch(view, at: at) {
            // Settled now, a member still in `failure` would get a single retry on top of the batch's, or be
            // taken for blocked by the batch's status meanwhile. Read again, less and less often.
            batchRereads += 1
            let wait = min(policy.settleDelay * Double(1 << min(batchRereads - 1, 3)), 16)
            phase = .unsettled(witness: witness, readAfter: at + wait, refusals: 0, singleOnly: false)
            return note(view)
        }
        // The call did not land. The row follows Postman if it is no longer in `failure`; else a new
        // intent with Postman's count now (committed with a fresh row check) before the call goes again.
        return learnBeforeRetry(view, fromPage: fromPage)
    }

    /// A member of a batch this run called whole whose read shows no new attempt yet: Postman may carry out
    /// a batch retry in the background. It waits `batchSettleWindow` after the call (answered 201, lost, or
    /// sent before a restart with no answer recorded), and longer while the batch shows a status other than
    /// the retryable ones (at work), up to the poll deadline. One that ended otherwise (`success`) is not
    /// retried by the batch.
    func mayStillBeRetriedByItsBatch(_ view: PostmanView, at: Double) -> Bool {
        guard let calledAt = batchCallAt else { return false }
        guard view.latestStatus == "failure" || !PostmanStatus.isFinal(view.latestStatus, recipient: row.recipient) else {
            return false
        }
        if at < calledAt + policy.batchSettleWindow { return true }
        guard let status = view.batchStatus, !Self.retryableBatchStatuses.contains(status) else { return false }
        return at < calledAt + max(policy.batchSettleWindow, policy.pollTimeout)
    }

    mutating func acceptedAfterAll(_ view: PostmanView, witness: Int, at: Double, acceptedAt: Double? = nil) -> [Output] {
        let outputs = accept(at: acceptedAt ?? at, witness: witness)
        guard case .awaiting(let a) = phase else { return outputs }
        return outputs + polled(a, view: view, fromPage: false, at: at)
    }

    /// Postman had `witness` attempts before the call, so it now counts at least `witness` retries:
    /// a pending message whose polls never showed the history still gets the larger count.
    private mutating func accept(at: Double, witness: Int) -> [Output] {
        postmanRetries = max(postmanRetries ?? 0, witness)
        intentDurable = false
        let deadline = at + policy.pollTimeout
        phase = .awaiting(Awaiting(acceptedAt: at, deadline: deadline, nextPoll: at + policy.firstPollDelay))
        return [.accepted(at: at, deadline: deadline)]
    }

    mutating func polled(_ awaiting: Awaiting, view: PostmanView, fromPage: Bool, at: Double) -> [Output] {
        var a = awaiting
        let outputs = note(view)
        let status = view.latestStatus
        if PostmanStatus.isFinal(status, recipient: row.recipient) {
            if view.attempts == nil && fromPage {
                // A list item without its attempt history: one single read for the count and the error.
                a.wantSingle = true
                a.nextPoll = at
                phase = .awaiting(a)
                return outputs
            }
            // Postman's count only grows: the largest seen (or known from the witness) stands.
            let update = FinalState.afterAcceptedRetry(
                rowRetryCount: row.baseRetryCount, postmanRetries: postmanRetries, lastStatus: status,
                newestError: view.newestError, final: true)
            return outputs
                + resolve(
                    .retried, result: PostmanStatus.isSuccess(status) ? .succeeded : .failed, update: update, view: view,
                    acceptedAt: a.acceptedAt)
        }
        a.polls += 1
        a.wantSingle = false
        a.mustLookOnce = false
        a.nextPoll = at + min(policy.maxPollInterval, policy.firstPollDelay * Double(1 << min(a.polls - 1, 10)))
        phase = .awaiting(a)
        return outputs
    }

    private mutating func note(_ view: PostmanView) -> [Output] {
        lastStatus = view.latestStatus
        if let retries = view.retries { postmanRetries = max(postmanRetries ?? 0, retries) }
        return PostmanStatus.isKnown(view.latestStatus) ? [] : [.unknownStatus(view.latestStatus)]
    }

    /// The row follows Postman; without an attempt history the count and the error stay as they are.
    func reconciledUpdate(_ view: PostmanView) -> RowUpdate {
        guard view.attempts != nil else { return RowUpdate(status: view.latestStatus, retryCount: nil, errorCode: nil) }
        return FinalState.reconciled(
            rowRetryCount: row.retryCount, postmanRetries: view.retries, latestStatus: view.latestStatus,
            newestError: view.newestError)
    }

    mutating func resolve(
        _ outcome: Outcome, result: RetryResult? = nil, update: RowUpdate? = nil, httpStatus: Int? = nil,
        code: String? = nil, message: String? = nil, view: PostmanView? = nil, acceptedAt: Double? = nil
    ) -> [Output] {
        intentDurable = false
        let resolution = Resolution(
            outcome: outcome, result: result, update: update, httpStatus: httpStatus, postmanCode: code,
            postmanMessage: message, lastStatus: view?.latestStatus ?? lastStatus,
            postmanRetries: [view?.retries, postmanRetries].compactMap { $0 }.max(), newestError: view?.newestError,
            acceptedAt: acceptedAt)
        phase = .done(resolution)
        return [.resolved(resolution)]
    }
}
