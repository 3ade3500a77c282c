// The endpoints that read or retry one message, and the batch retry.
extension State {
    mutating func getMessage(campaignId: String, messageId: String, t: Double) -> SimResponse {
        guard let m = messages[messageId], m.campaignId == campaignId else {
            return error(404, "message_not_found", "Message not found", type: "domain_error")
        }
        return SimResponse(status: 200, body: render(m, t: t, batchStyle: false, forceCreated: false).serialized())
    }

    /// Check order: the message exists in this campaign and is `failure`; then its batch is retryable;
    /// then fewer than 3 retries were used.
    mutating func retryMessage(campaignId: String, messageId: String, t: Double, nowMs: Int64) -> SimResponse {
        guard var m = messages[messageId], m.campaignId == campaignId, m.latestStatus(at: t) == "failure" else {
            return error(
                400, "message_not_found_or_retry_message_not_in_failure_status",
                "Message not found or message is not in failure status", type: "domain_error")
        }
        if let batchId = m.batchId, batches[batchId]?.isRetryable != true {
            return error(400, "batch_not_found_or_is_not_retryable", "Batch not found or is not retryable", type: "domain_error")
        }
        guard m.retriesUsed < 3 else {
            return error(
                400, "too_many_message_attempts_error", "Message has reached the maximum number of attempts of 3",
                type: "domain_error")
        }
        accept(&m, t: t, nowMs: nowMs)
        messages[messageId] = m
        return SimResponse(status: 201, body: render(m, t: t, batchStyle: false, forceCreated: true).serialized())
    }

    mutating func retryBatch(campaignId: String, batchId: String, t: Double, nowMs: Int64) -> SimResponse {
        guard let batch = batches[batchId], batch.campaignId == campaignId, batch.isRetryable else {
            return error(400, "batch_not_found_or_is_not_retryable", "Batch not found or is not retryable", type: "domain_error")
        }
        let ids = batchOrder[batchId] ?? []
        if ids.contains(where: { messages[$0]!.latestStatus(at: t) == "created" }) {
            batches[batchId]!.status = "messages_enqueuing_failed"  // as Postman documents
            return error(400, "unresolved_batch_messages", "At least one batch message is unresolved", type: "domain_error")
        }
        let retryable = ids.filter { id in
            let m = messages[id]!
            return m.latestStatus(at: t) == "failure" && m.retriesUsed < 3
        }
        guard !retryable.isEmpty else {
            return error(400, "no_failed_batch_messages_to_retry", "No failed batch messages to retry", type: "domain_error")
        }
        guard options.batchRetryDelay > 0 else {
            for id in retryable {
                var m = messages[id]!
                accept(&m, t: t, nowMs: nowMs)
                messages[id] = m
            }
            return SimResponse(status: 201, body: nil)
        }
        let delay = options.batchRetryDelay / options.timeScale
        batches[batchId]!.status = "messages_enqueuing"
        batchRetriesDue.append(
            .init(batchId: batchId, dueT: t + delay, dueMs: nowMs + Int64(delay * 1000), messageIds: retryable))
        return SimResponse(status: 201, body: nil)
    }

    /// Puts into effect the whole-batch retries due by `t` (each member still in `failure` with retries
    /// left then is retried, at its due time), and makes their batches retryable again.
    mutating func applyDueBatchRetries(t: Double) {
        guard batchRetriesDue.contains(where: { $0.dueT <= t }) else { return }
        let due = batchRetriesDue.filter { $0.dueT <= t }.sorted { $0.dueT < $1.dueT }
        batchRetriesDue.removeAll { $0.dueT <= t }
        for retry in due {
            for id in retry.messageIds {
                guard var m = messages[id], m.latestStatus(at: retry.dueT) == "failure", m.retriesUsed < 3 else { continue }
                accept(&m, t: retry.dueT, nowMs: retry.dueMs)
                messages[id] = m
            }
            batches[retry.batchId]?.status = "messages_enqueued"
        }
    }

    /// Appends the new attempt. Its outcome comes from the message's script, else from the seeded
    /// weights; randomness is keyed by (seed, message id, attempt number), not by request order.
    mutating func accept(_ m: inout MessageState, t: Double, nowMs: Int64) {
        let k = m.accepted.count
        var rng = SplitMix64.forAttempt(seed: options.seed, messageId: m.id, attemptIndex: m.retriesUsed + 1)
        let outcome: ScriptedOutcome
        if let script = m.outcomes, !script.isEmpty {
            outcome = script[min(k, script.count - 1)]
        } else {
            let u = rng.unit()
            outcome = weightedOutcomes.first { u < $0.1 }?.0 ?? weightedOutcomes.last!.0
        }
        let drawn = options.latencyMin + (options.latencyMax - options.latencyMin) * rng.unit()
        let latency = (outcome.seconds ?? drawn) / options.timeScale
        m.accepted.append(.init(acceptedT: t, acceptedMs: nowMs, outcome: outcome.kind, latency: latency))
        acceptedRetries[m.id, default: 0] += 1
    }
}
