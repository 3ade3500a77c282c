import Foundation

// What every request goes through, in order: the rate limit, the fault draws, authentication, the
// endpoint, then the faults that damage an answer already worked out; each request is logged.
extension State {
    mutating func handle(_ request: SimRequest, t: Double, nowMs: Int64) -> SimResponse {
        applyDueBatchRetries(t: t)
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

    private mutating func respond(_ request: SimRequest, campaignId: String?, route: Route, t: Double, nowMs: Int64)
        -> SimResponse
    {
        guard let campaignId else {
            return error(404, "not_found", "Not found", type: "not_found_error")
        }
        // 1. Rate limit: every request to the campaign path counts, whatever it is or whoever sends it.
        var window =
            windows[campaignId]
            ?? CampaignWindow(
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
        let drawBefore = faultRNG.unit()
        let drawAfter = faultRNG.unit()
        let drawSlow = faultRNG.unit()
        let drawDrop = faultRNG.unit()
        let drawMalformed = faultRNG.unit()
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
            (
                "error",
                .object([("code", .string(code)), ("message", .string(message)), ("type", .string(type)), ("id", .string(id))])
            )
        ])
        return SimResponse(status: status, body: body.serialized())
    }
}
