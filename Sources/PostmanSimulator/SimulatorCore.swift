import Foundation
import Synchronization

/// A Postman request as the core sees it, stripped of transport.
struct SimRequest: Sendable {
    var method: String
    /// Path as received, percent-encoded, without the query string.
    var rawPath: String
    var query: String?
    var authorization: String?
}

/// What to send back, and how (faults that need the transport are carried out by the server layer).
struct SimResponse: Sendable {
    enum Delivery: Sendable, Equatable {
        case normal
        /// Close the connection without answering.
        case drop
        /// Cut the body short (malformed JSON).
        case truncated
    }

    var status: Int
    var body: String?
    var headers: [(String, String)] = []
    var delivery: Delivery = .normal
    /// Hold the answer back this long (slow-response fault).
    var delaySeconds: Double = 0
}

/// All simulator state behind one lock. Every request is handled in a single short critical section,
/// O(1) apart from list pages; nothing here blocks or awaits.
final class SimulatorCore: Sendable {
    private let clockStart = ContinuousClock.now
    private let wallStartMs = SimTime.nowMillis()
    private let state: Mutex<State>

    init(data: SimulatorData, options: SimulatorOptions) throws {
        try data.validate()
        let weighted = try Self.weightedOutcomes(options.outcomeWeights)
        guard options.timeScale > 0, options.timeScale.isFinite else { throw SimulatorDataError("time scale must be > 0") }
        guard options.latencyMin >= 0, options.latencyMax >= options.latencyMin else {
            throw SimulatorDataError("latency range must satisfy 0 <= min <= max")
        }
        guard options.defaultRateLimit >= 1 else { throw SimulatorDataError("rate limit must be at least 1") }
        state = Mutex(State(options: options, weightedOutcomes: weighted, data: data, nowT: 0))
    }

    /// Seconds since start, monotonic: used for rate windows, delivery progress and ledger times.
    func nowT() -> Double {
        let d = ContinuousClock.now - clockStart
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    func wallMillis(at t: Double) -> Int64 {
        wallStartMs + Int64(t * 1000)
    }

    func load(_ data: SimulatorData) throws {
        try data.validate()
        let t = nowT()
        state.withLock { $0.reload(data: data, nowT: t) }
    }

    func reset() {
        let t = nowT()
        state.withLock { $0.reload(data: $0.data, nowT: t) }
    }

    func ledger() -> SimulatorLedger {
        state.withLock { s in
            SimulatorLedger(
                requests: s.requests,
                acceptedRetries: s.acceptedRetries,
                rateLimited: s.rateLimited,
                maxRequestsIn1s: s.windows.compactMapValues { $0.maxArrivals > 0 ? $0.maxArrivals : nil }
            )
        }
    }

    func handle(_ request: SimRequest) -> SimResponse {
        state.withLock { s in
            // Read the clock under the lock so arrival times are in the order requests are handled
            // (the sliding windows rely on increasing times).
            let t = nowT()
            return s.handle(request, t: t, nowMs: wallMillis(at: t))
        }
    }

    static func weightedOutcomes(_ weights: [String: Double]) throws -> [(ScriptedOutcome, Double)] {
        var list: [(ScriptedOutcome, Double)] = []
        var total = 0.0
        for key in weights.keys.sorted() {  // sorted: the draw must not depend on dictionary order
            let w = weights[key]!
            guard let outcome = ScriptedOutcome(key), w >= 0, w.isFinite else {
                throw SimulatorDataError("bad outcome weight \(key)=\(w)")
            }
            guard w > 0 else { continue }
            total += w
            list.append((outcome, total))
        }
        guard total > 0 else { throw SimulatorDataError("outcome weights must not all be zero") }
        return list.map { ($0.0, $0.1 / total) }
    }
}

// MARK: - State

struct State: Sendable {
    var options: SimulatorOptions
    let weightedOutcomes: [(ScriptedOutcome, Double)]
    /// The data last loaded, for `/_sim/reset`.
    var data: SimulatorData
    var apiKeys: [String: String] = [:]
    var rateLimits: [String: Int] = [:]
    var messages: [String: MessageState] = [:]
    var batches: [String: BatchState] = [:]
    /// Message ids per campaign / batch, sorted by (createdAt, id): the list endpoints' order.
    var campaignOrder: [String: [String]] = [:]
    var batchOrder: [String: [String]] = [:]
    var windows: [String: CampaignWindow] = [:]
    var requests: [SimulatorLedger.Request] = []
    var acceptedRetries: [String: Int] = [:]
    var rateLimited = 0
    var faultRNG: SplitMix64
    var errorCounter: UInt64 = 0
    var loadedAtT: Double = 0

    init(options: SimulatorOptions, weightedOutcomes: [(ScriptedOutcome, Double)], data: SimulatorData, nowT: Double) {
        self.options = options
        self.weightedOutcomes = weightedOutcomes
        self.data = data
        self.faultRNG = SplitMix64(seed: options.seed ^ 0xFA17_5EED)
        reload(data: data, nowT: nowT)
    }

    /// Default creation time for messages that give none: deterministic, so same data => same cursors.
    static let defaultBaseMs: Int64 = SimTime.parseMillis("2026-11-21T08:00:00+08:00")!

    mutating func reload(data: SimulatorData, nowT: Double) {
        self.data = data
        apiKeys = Dictionary(data.campaigns.map { ($0.id, $0.apiKey) }, uniquingKeysWith: { a, _ in a })
        rateLimits = Dictionary(data.campaigns.compactMap { c in c.rateLimit.map { (c.id, $0) } }, uniquingKeysWith: { a, _ in a })
        batches = Dictionary(data.batches.map { ($0.id, BatchState(id: $0.id, campaignId: $0.campaignId, status: $0.status)) }, uniquingKeysWith: { a, _ in a })
        messages = [:]
        messages.reserveCapacity(data.messages.count)
        for (index, m) in data.messages.enumerated() {
            messages[m.id] = Self.buildMessage(m, index: index)
        }
        let sorted = messages.values.sorted { ($0.createdAtMs, $0.id) < ($1.createdAtMs, $1.id) }
        campaignOrder = [:]
        batchOrder = [:]
        for m in sorted {
            campaignOrder[m.campaignId, default: []].append(m.id)
            if let b = m.batchId { batchOrder[b, default: []].append(m.id) }
        }
        windows = [:]
        requests = []
        acceptedRetries = [:]
        rateLimited = 0
        faultRNG = SplitMix64(seed: options.seed ^ 0xFA17_5EED)
        errorCounter = 0
        loadedAtT = nowT
    }

    static func buildMessage(_ m: SimulatorData.Message, index: Int) -> MessageState {
        let explicitCreated = m.createdAt.flatMap(SimTime.parseMillis)
        let explicitAttemptTimes = m.attempts.compactMap { $0.createdAt.flatMap(SimTime.parseMillis) }
        let anchor = explicitCreated ?? explicitAttemptTimes.min() ?? (defaultBaseMs + Int64(index) * 1000)
        var history = m.attempts.enumerated().map { k, a in
            MessageState.HistoricAttempt(
                status: a.status,
                errorType: a.errorType ?? a.errorCode.map(errorType(forCode:)),
                errorCode: a.errorCode,
                createdAtMs: a.createdAt.flatMap(SimTime.parseMillis) ?? anchor + Int64(k) * 60_000
            )
        }
        if history.isEmpty {
            // Postman always has at least one attempt; mirror the data's status.
            history = [.init(status: m.latestStatus, createdAtMs: anchor)]
        }
        history.sort { $0.createdAtMs < $1.createdAtMs }
        // Keep Postman's count (attempts - 1) equal to `retries`: pad with older failed attempts.
        let retries = max(m.retries, history.count - 1)
        while history.count < retries + 1 {
            let oldest = history[0]
            history.insert(
                .init(status: "failure", errorType: oldest.errorType, errorCode: oldest.errorCode, createdAtMs: oldest.createdAtMs - 60_000),
                at: 0
            )
        }
        return MessageState(
            id: m.id, campaignId: m.campaignId, batchId: m.batchId, recipient: m.recipient,
            createdAtMs: explicitCreated ?? min(anchor, history[0].createdAtMs),
            baseStatus: m.latestStatus,
            baseUpdatedAtMs: history.map(\.createdAtMs).max()!,
            history: history, baseRetries: retries,
            outcomes: m.outcomes?.compactMap(ScriptedOutcome.init)
        )
    }

    // MARK: Request handling

    enum Route {
        case listCampaign
        case getMessage(String)
        case retryMessage(String)
        case listBatch(String)
        case retryBatch(String)
        case unknown
    }

    mutating func handle(_ request: SimRequest, t: Double, nowMs: Int64) -> SimResponse {
        let (campaignId, route) = Self.route(method: request.method, rawPath: request.rawPath)
        var response = respond(request, campaignId: campaignId, route: route, t: t, nowMs: nowMs)
        if response.status == 429 { rateLimited += 1 }
        requests.append(
            .init(
                t: (t * 1_000_000).rounded() / 1_000_000, campaignId: campaignId, method: request.method,
                path: request.rawPath, status: response.delivery == .drop ? 0 : response.status
            )
        )
        if response.delivery == .truncated, let body = response.body {
            response.body = String(body.utf8.prefix(max(1, body.utf8.count / 2)))  // never valid JSON
        }
        return response
    }

    /// Splits the raw path into decoded segments (`%2F` stays inside its segment), with or without `/api/v2`.
    static func route(method: String, rawPath: String) -> (campaignId: String?, route: Route) {
        var parts = rawPath.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        if parts.count >= 2, parts[0] == "api", parts[1] == "v2" { parts.removeFirst(2) }
        guard parts.count >= 2, parts[0] == "campaigns", let campaign = percentDecode(parts[1]) else { return (nil, .unknown) }
        let rest = Array(parts.dropFirst(2))
        switch (method, rest.count) {
        case ("GET", 1) where rest[0] == "messages":
            return (campaign, .listCampaign)
        case ("GET", 2) where rest[0] == "messages":
            return (campaign, percentDecode(rest[1]).map(Route.getMessage) ?? .unknown)
        case ("POST", 3) where rest[0] == "messages" && rest[2] == "retry":
            return (campaign, percentDecode(rest[1]).map(Route.retryMessage) ?? .unknown)
        case ("GET", 3) where rest[0] == "batch" && rest[2] == "messages":
            return (campaign, percentDecode(rest[1]).map(Route.listBatch) ?? .unknown)
        case ("POST", 3) where rest[0] == "batch" && rest[2] == "retry":
            return (campaign, percentDecode(rest[1]).map(Route.retryBatch) ?? .unknown)
        default:
            return (campaign, .unknown)
        }
    }

    private mutating func respond(_ request: SimRequest, campaignId: String?, route: Route, t: Double, nowMs: Int64) -> SimResponse {
        guard let campaignId else {
            return error(404, "not_found", "Not found", type: "not_found_error")
        }
        // 1. Rate limit: every request to the campaign path counts, whatever it is or whoever sends it.
        var window = windows[campaignId] ?? CampaignWindow(
            limit: rateLimits[campaignId] ?? options.defaultRateLimit,
            backgroundRate: options.backgroundTraffic[campaignId] ?? 0,
            startT: loadedAtT
        )
        window.catchUpBackground(to: t)
        window.recordArrival(t)
        let admitted = window.admit(t)
        windows[campaignId] = window
        guard admitted else {
            var r = error(429, "too_many_requests", "Too many requests", type: "rate_limit_error")
            if let seconds = options.retryAfterSeconds { r.headers.append(("Retry-After", String(seconds))) }
            return r
        }
        // 2. Fault draws: always five, so the sequence only depends on how many requests were admitted.
        let f = options.faults
        let drawBefore = faultRNG.unit(), drawAfter = faultRNG.unit(), drawSlow = faultRNG.unit()
        let drawDrop = faultRNG.unit(), drawMalformed = faultRNG.unit()
        if drawBefore < f.error5xxBefore {
            return error(503, "service_unavailable", "Service temporarily unavailable (simulated)", type: "server_error")
        }
        // 3. Authentication.
        guard let authorization = request.authorization else {
            return SimResponse(status: 401, body: #"{"message":"Unauthorized","statusCode":401}"#)
        }
        if options.ipWhitelistFailureCampaigns.contains(campaignId) {
            if options.ipRefusalAs400 {
                return error(400, "invalid_ip_address_used", "Invalid IP address used", type: "authentication_error")
            }
            return error(401, "invalid_ip_address_error", "IP address invalid", type: "authentication_error")
        }
        guard let key = Self.bearerToken(authorization), let expected = apiKeys[campaignId], key == expected else {
            return error(401, "invalid_api_key_provided", "API key invalid", type: "authentication_error")
        }
        // 4. The endpoint itself.
        var response: SimResponse
        var acceptedRetry = false
        switch route {
        case .getMessage(let id):
            response = getMessage(campaignId: campaignId, messageId: id, t: t)
        case .retryMessage(let id):
            response = retryMessage(campaignId: campaignId, messageId: id, t: t, nowMs: nowMs)
            acceptedRetry = response.status == 201
        case .listCampaign:
            response = list(ids: campaignOrder[campaignId] ?? [], query: request.query, batchStyle: false, t: t)
        case .listBatch(let batchId):
            guard let batch = batches[batchId], batch.campaignId == campaignId else {
                return error(404, "batch_not_found", "Batch not found", type: "domain_error")
            }
            response = list(ids: batchOrder[batchId] ?? [], query: request.query, batchStyle: true, t: t)
        case .retryBatch(let batchId):
            response = retryBatch(campaignId: campaignId, batchId: batchId, t: t, nowMs: nowMs)
            acceptedRetry = response.status == 201
        case .unknown:
            return error(404, "not_found", "Not found", type: "not_found_error")
        }
        // 5. Faults after the work is done: the state has changed, the answer is lost or damaged.
        if acceptedRetry, drawAfter < f.error5xxAfterAccept {
            response = error(500, "internal_server_error", "Internal server error (simulated)", type: "server_error")
        } else if drawDrop < f.dropConnection {
            response.delivery = .drop
        } else if drawMalformed < f.malformedJSON, response.status < 300, response.body != nil {
            response.delivery = .truncated
        }
        if drawSlow < f.slowResponse { response.delaySeconds = f.slowResponseSeconds }
        return response
    }

    static func bearerToken(_ header: String) -> String? {
        let trimmed = header.trimmingCharacters(in: .whitespaces)
        guard trimmed.count > 7, trimmed.prefix(7).lowercased() == "bearer " else { return nil }
        return String(trimmed.dropFirst(7)).trimmingCharacters(in: .whitespaces)
    }

    mutating func error(_ status: Int, _ code: String, _ message: String, type: String) -> SimResponse {
        errorCounter += 1
        var g = SplitMix64(seed: options.seed &+ errorCounter)
        let id = "err_" + String(g.next(), radix: 16)
        let body = JSON.object([
            ("error", .object([("code", .string(code)), ("message", .string(message)), ("type", .string(type)), ("id", .string(id))]))
        ])
        return SimResponse(status: status, body: body.serialized())
    }

    // MARK: Endpoints

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
            return error(400, "too_many_message_attempts_error", "Message has reached the maximum number of attempts of 3", type: "domain_error")
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
        for id in retryable {
            var m = messages[id]!
            accept(&m, t: t, nowMs: nowMs)
            messages[id] = m
        }
        return SimResponse(status: 201, body: nil)
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

    // MARK: Lists

    mutating func list(ids: [String], query: String?, batchStyle: Bool, t: Double) -> SimResponse {
        let params = Self.parseQuery(query)
        var limit = 100  // `limit` is optional in the new docs; the legacy 1...1000 bound is enforced
        if let raw = params["limit"] {
            guard let l = Int(raw), (1...1000).contains(l) else {
                return error(400, "parameter_invalid", "limit must be an integer between 1 and 1000", type: "invalid_request_error")
            }
            limit = l
        }
        var ids = ids
        if let search = params["search"], !search.isEmpty {
            ids = ids.filter { messages[$0]!.recipient.contains(search) }
        }
        let all = messages
        let keyOf = { (id: String) -> (Int64, String) in (all[id]!.createdAtMs, id) }
        var start = 0
        var end = min(ids.count, limit)
        if let after = params["after"] {
            guard let key = Self.decodeCursor(after) else {
                return error(400, "parameter_invalid", "after is not a valid cursor", type: "invalid_request_error")
            }
            start = Self.lowerBound(ids, count: ids.count) { keyOf($0) <= key }
            end = min(ids.count, start + limit)
        } else if let before = params["before"] {
            guard let key = Self.decodeCursor(before) else {
                return error(400, "parameter_invalid", "before is not a valid cursor", type: "invalid_request_error")
            }
            end = Self.lowerBound(ids, count: ids.count) { keyOf($0) < key }
            start = max(0, end - limit)
        }
        let page = ids[start..<end]
        let items = page.map { render(messages[$0]!, t: t, batchStyle: batchStyle, forceCreated: false) }
        let first = page.first.map { Self.encodeCursor(messages[$0]!) }
        let last = page.last.map { Self.encodeCursor(messages[$0]!) }
        let body = JSON.object([
            ("data", .array(items)),
            ("pageData", .object([
                ("hasNextPage", .bool(end < ids.count)),
                ("hasPreviousPage", .bool(start > 0)),
                ("startCursor", .optional(first)),
                ("endCursor", .optional(last)),
            ])),
        ])
        return SimResponse(status: 200, body: body.serialized())
    }

    /// First index whose element does not satisfy `isBefore` (elements satisfying it form a prefix).
    static func lowerBound(_ ids: [String], count: Int, isBefore: (String) -> Bool) -> Int {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if isBefore(ids[mid]) { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Like Postman's: base64 of the JSON pair `[createdAt, id]`.
    static func encodeCursor(_ m: MessageState) -> String {
        let json = JSON.array([.string(SimTime.format(millis: m.createdAtMs)), .string(m.id)]).serialized()
        return Data(json.utf8).base64EncodedString()
    }

    static func decodeCursor(_ cursor: String) -> (Int64, String)? {
        // A `+` sent unencoded in a query may have turned into a space on the way.
        let fixed = cursor.replacingOccurrences(of: " ", with: "+")
        guard let data = Data(base64Encoded: fixed),
            let pair = try? JSONSerialization.jsonObject(with: data) as? [Any], pair.count == 2,
            let created = pair[0] as? String, let id = pair[1] as? String,
            let ms = SimTime.parseMillis(created)
        else { return nil }
        return (ms, id)
    }

    static func parseQuery(_ query: String?) -> [String: String] {
        guard let query, !query.isEmpty else { return [:] }
        var result: [String: String] = [:]
        for pair in query.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = percentDecode(String(kv[0])) else { continue }
            let value = kv.count > 1 ? (percentDecode(String(kv[1])) ?? String(kv[1])) : ""
            if result[key] == nil { result[key] = value }
        }
        return result
    }

    // MARK: Rendering

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
            let type: String? = k < m.accepted.count
                ? v.errorCode.map(errorType(forCode:)) : (historyErrorTypes[k - m.accepted.count] ?? v.errorCode.map(errorType(forCode:)))
            let delivered = v.status == "success" ? JSON.string(SimTime.format(millis: v.updatedAtMs)) : .null
            let sentAt = ["created", "enqueued", "sending"].contains(v.status) ? JSON.null : .string(SimTime.format(millis: v.createdAtMs))
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
                    ("metadata", .object([])),
                ])
            }
            var fields: [(String, JSON)] = [
                ("id", .string(attemptId)),
                ("status", .string(v.status)),
                ("createdAt", .string(SimTime.format(millis: v.createdAtMs))),
                ("sentAt", sentAt),
                ("deliveredAt", delivered),
            ]
            if failed, type != nil || v.errorCode != nil {
                fields.append(("error", .object([("type", .optional(type)), ("code", .optional(v.errorCode))])))
            }
            return .object(fields)
        }
        var batchesJSON: [JSON] = []
        if let batchId = m.batchId {
            batchesJSON.append(.object([
                ("id", .string(batchId)),
                ("status", .optional(batches[batchId]?.status)),
                ("campaignId", .string(m.campaignId)),
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
            ("batches", .array(batchesJSON)),
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

/// Percent-decodes one path segment or query component; nil when the escapes are not valid UTF-8.
func percentDecode(_ s: String) -> String? {
    guard s.utf8.contains(UInt8(ascii: "%")) else { return s }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(s.utf8.count)
    var it = Array(s.utf8)[...]
    while let b = it.popFirst() {
        if b == UInt8(ascii: "%") {
            guard it.count >= 2, let hi = hexValue(it[it.startIndex]), let lo = hexValue(it[it.startIndex + 1]) else { return nil }
            bytes.append(hi << 4 | lo)
            it = it.dropFirst(2)
        } else {
            bytes.append(b)
        }
    }
    return String(validating: bytes, as: UTF8.self)
}

private func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case 48...57: return c - 48
    case 65...70: return c - 55
    case 97...102: return c - 87
    default: return nil
    }
}
