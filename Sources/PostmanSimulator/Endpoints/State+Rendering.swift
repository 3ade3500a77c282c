// Messages rendered as Postman shows them.
extension State {
    /// The message object. Single GET and the campaign list use `attempts` (nested `error`), the batch list
    /// uses `messageAttempts` (flat `errorType`/`errorCode`) plus `numAttempts`, as in Postman's docs.
    func render(_ m: MessageState, t: Double, batchStyle: Bool, forceCreated: Bool) -> JSON {
        var views: [MessageState.AttemptView] = []
        views.reserveCapacity(m.history.count + m.accepted.count)
        for (k, retry) in m.accepted.enumerated().reversed() {
            views.append(m.view(of: retry, at: t, forceCreated: forceCreated && k == m.accepted.count - 1))
        }
        for h in m.history.reversed() {
            views.append(.init(status: h.status, errorCode: h.errorCode, createdAtMs: h.createdAtMs, updatedAtMs: h.createdAtMs))
        }
        let latest = m.accepted.isEmpty ? m.baseStatus : views[0].status
        let updatedAt = max(m.baseUpdatedAtMs, views.first?.updatedAtMs ?? m.baseUpdatedAtMs)
        let historyErrorTypes = m.history.reversed().map(\.errorType)
        let attemptCount = views.count
        let attempts: [JSON] = views.enumerated().map { k, v in
            let attemptId = "attempt_\(m.id)_\(attemptCount - k)"
            let failed = v.status == "failure"
            let type: String? =
                k < m.accepted.count
                ? v.errorCode.map(errorType(forCode:))
                : (historyErrorTypes[k - m.accepted.count] ?? v.errorCode.map(errorType(forCode:)))
            let delivered = v.status == "success" ? JSON.string(SimTime.format(millis: v.updatedAtMs)) : .null
            let sentAt =
                ["created", "enqueued", "sending"].contains(v.status) ? JSON.null : .string(SimTime.format(millis: v.createdAtMs))
            if batchStyle {
                return .object([
                    ("id", .string(attemptId)),
                    ("messageId", .string(m.id)),
                    ("status", .string(v.status)),
                    ("errorType", failed ? .optional(type) : .null),
                    ("errorCode", failed ? .optional(v.errorCode) : .null),
                    ("createdAt", .string(SimTime.format(millis: v.createdAtMs))),
                    ("updatedAt", .string(SimTime.format(millis: v.updatedAtMs))),
                    ("sentAt", sentAt),
                    ("deliveredAt", delivered),
                    ("metadata", .object([]))
                ])
            }
            var fields: [(String, JSON)] = [
                ("id", .string(attemptId)),
                ("status", .string(v.status)),
                ("createdAt", .string(SimTime.format(millis: v.createdAtMs))),
                ("sentAt", sentAt),
                ("deliveredAt", delivered)
            ]
            if failed, type != nil || v.errorCode != nil {
                fields.append(("error", .object([("type", .optional(type)), ("code", .optional(v.errorCode))])))
            }
            return .object(fields)
        }
        var batchesJSON: [JSON] = []
        if let batchId = m.batchId {
            batchesJSON.append(
                .object([
                    ("id", .string(batchId)),
                    ("status", .optional(batches[batchId]?.status)),
                    ("campaignId", .string(m.campaignId))
                ]))
        }
        var fields: [(String, JSON)] = [
            ("createdAt", .string(SimTime.format(millis: m.createdAtMs))),
            ("updatedAt", .string(SimTime.format(millis: updatedAt))),
            ("id", .string(m.id)),
            ("recipient", .string(m.recipient)),
            ("language", .string("english")),
            ("values", .object([])),
            ("fullMessage", .string("Simulated message\n\nThis is an automated message from the Postman simulator.")),
            ("latestStatus", .string(latest)),
            ("templateBodyId", .string("template_body_sim")),
            ("campaignId", .string(m.campaignId)),
            ("creatorId", .string("user_sim")),
            ("batches", .array(batchesJSON))
        ]
        if batchStyle {
            fields.append(("messageAttempts", .array(attempts)))
            fields.append(("numAttempts", .int(attemptCount)))
        } else {
            fields.append(("attempts", .array(attempts)))
        }
        return .object(fields)
    }
}
