import Foundation
import RetryCore
import RetryJournal

/// The report turned into display values: every number formatted, every chart coordinate computed.
/// The templates only place these; they make no decisions.
struct ReportView {
    struct Tile { var value: String, caption: String, tileClass: String }
    struct LegendItem { var name: String, color: String }
    struct Segment { var x: String, width: String, color: String, name: String, count: Int }
    struct Bar { var campaignId: String, caption: String, ariaLabel: String, segments: [Segment] }
    struct CampaignRow {
        var campaignId: String
        var selected, succeeded, failed, pending, exhausted, other, skipped, carriedOver: String
    }
    struct Tick { var pos: String, textPos: String, labelPos: String, text: String }
    struct Mark { var pos: String }
    struct RateChart {
        var campaignId: String, caption: String, ariaLabel: String, hasSeconds: Bool
        var chartWidth = Chart.width, chartHeight = Chart.height
        var plotLeft = Chart.left, plotRight = Chart.right, plotTop = Chart.top, plotBottom = Chart.bottom
        var plotWidth = Chart.right - Chart.left, plotHeight = Chart.bottom - Chart.top
        var markTop = Chart.bottom - 10
        var yTicks: [Tick], xTicks: [Tick], points: String, marks: [Mark]
        var hasLimit: Bool, limit: String, limitY: String, limitTextX = Chart.left + 6, limitTextY: String
    }
    struct Bucket { var range: String, barWidth: String, count: Int }
    struct Outcome { var count: Int, median: String, p90: String, slowest: String, buckets: [Bucket] }
    struct Code {
        var code: String, count: Int, meaning: String, worth: String, worthShort: String, worthClass: String, charged: String,
            last: Bool
    }
    struct Rejected { var code: String, count: Int }
    struct CostLine { var what: String, messages: String, price: String, amount: String }
    struct Cost {
        var currency: String, lines: [CostLine], subtotal: String, gst: String, gstRate: String, total: String
        var localCount: Int, foreignCount: Int, freeCount: Int, assumptions: String
    }
    struct ComparisonRow { var metric: String, now: String, before: String, delta: String, deltaClass: String }
    struct Comparison { var previousId: String, headline: String, rows: [ComparisonRow] }
    struct CategoryCount { var name: String, count: Int, last: Bool }
    struct AttentionRow { var category: String, campaignId: String, messageId: String, recipient: String, code: String }
    struct AttentionGroup { var name: String, code: String, hasCode: Bool, count: Int, action: String }
    struct Unknown { var campaignId: String, messageId: String, status: String }

    var title: String
    var runId: String
    var status: String
    var startedAt: String
    var durationText: String
    var agencyTable: String
    var resumed: Bool
    var processes: Int
    var hasLastError: Bool
    var lastError: String
    var notFinished: Bool
    /// Selected messages a run that has not finished has not settled yet (outside the counts), or "".
    var unsettledText: String
    var tiles: [Tile]
    var legend: [LegendItem]
    var bars: [Bar]
    var campaignRows: [CampaignRow]
    var otherText: String
    var skippedText: String
    var totalCallsText: String
    /// One line per whole-batch retry call (batch, members, when, answer); empty when there were none.
    var batchCallLines: [String]
    var rates: [RateChart]
    var outcome: Outcome?
    var hasCodes: Bool
    var codes: [Code]
    var hasRejected: Bool
    var rejected: [Rejected]
    var cost: Cost
    var comparison: Comparison?
    var attentionCount: Int
    var hasAttention: Bool
    var attentionByCategory: [CategoryCount]
    var attention: [AttentionRow]
    var attentionGroups: [AttentionGroup]
    var attentionShownCount: Int
    var attentionMore: Bool
    var attentionMoreCount: Int
    var hasUnknownStatuses: Bool
    var unknownStatuses: [Unknown]
    var generatedAt: String
    // for the Markdown summary
    var selected, retried, succeeded, failed, pending, exhausted, otherCount, skipped, carriedOver: String
    var retryCalls, pollCalls, rateLimitedCalls, peakText: String

    /// Rows of the "needs a person" table shown in the HTML (all of them are in failures.csv).
    static let attentionShown = 10

    /// The chart area of the request-rate charts (SVG user units).
    enum Chart {
        static let width = 560, height = 210
        static let left = 44, right = 548, top = 12, bottom = 176
        /// Longer runs are drawn in slices, each showing its busiest second, so a chart never has
        /// more points than this.
        static let maxColumns = 500
    }

    /// Outcome colours: one per bar segment, in the order of the legend.
    static let outcomeKinds: [(key: String, name: String, color: String)] = [
        (SummaryCount.succeeded.name, "succeeded", "#2e7d32"),
        (SummaryCount.failed.name, "failed again", "#c62828"),
        (SummaryCount.pending.name, "pending (no final status yet)", "#f2a900"),
        (SummaryCount.exhausted.name, "exhausted (no retries left)", "#6a1b9a"),
        (SummaryCount.reconciled.name, "reconciled (no longer failed)", "#0277bd"),
        (SummaryCount.notFound.name, "not found in Postman", "#8d6e63"),
        (SummaryCount.batchNotRetryable.name, "batch not retryable", "#00838f"),
        (SummaryCount.rejected.name, "refused by Postman", "#ad1457"),
        (SummaryCount.conflict.name, "row changed, not retried", "#ef6c00"),
        ("skip:otp", "skipped: OTP", "#90a4ae"),
        ("skip:retry_limit", "skipped: retry limit", "#b0bec5"),
        ("skip:permanent_error", "skipped: permanent error", "#607d8b"),
        ("skip:unknown_error_code", "skipped: unknown code", "#cfd8dc"),
        ("skip:malformed", "skipped: malformed row", "#37474f")
    ]

    static func value(of key: String, in c: RunSummary.Campaign) -> Int {
        if let count = SummaryCount(name: key) { return count.value(in: c) }
        guard key.hasPrefix("skip:") else { return 0 }
        return c.skippedByReason[String(key.dropFirst(5))] ?? 0
    }

    static func otherCount(_ c: some OutcomeTally) -> Int {
        c.notFound + c.reconciled + c.batchNotRetryable + c.rejected + c.conflict
    }

    static func number(_ value: Double) -> String {
        let rounded = (value * 10).rounded() / 10
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
    }

    init(_ report: RunReport) {
        let s = report.summary
        let c = s.counts
        title = "postman-retry run \(s.runId)"
        runId = s.runId
        status = s.status
        startedAt = s.startedAt.replacingOccurrences(of: "T", with: " ").replacingOccurrences(of: "Z", with: " UTC")
        durationText =
            (RunStatus(rawValue: s.status)?.isUnfinished == false ? "took " : "running for ")
            + (report.durationSeconds.map(Format.duration) ?? "–")
        agencyTable = Sanitize.text(report.agencyTable)
        resumed = report.processes > 1
        processes = report.processes
        lastError = Sanitize.text(report.lastError ?? "")
        hasLastError = !lastError.isEmpty
        notFinished = RunStatus(rawValue: s.status)?.isUnfinished ?? false
        unsettledText =
            c.unsettled.map {
                "\(Format.count($0)) more selected messages are not settled yet (not in the counts); the next run resumes them."
            }
            ?? ""
        generatedAt = ISO8601DateFormatter().string(from: report.generatedAt)

        tiles = Self.tiles(report)
        (legend, bars) = Self.outcomeBars(s.campaigns)
        campaignRows = s.campaigns.map(Self.campaignRow)
        otherText =
            "\(c.reconciled) reconciled, \(c.notFound) not found, \(c.batchNotRetryable) batch not retryable, "
            + "\(c.rejected) refused, \(c.conflict) changed before retry"
        skippedText = SkipReason.allCases.map { "\(c.skippedByReason[$0.rawValue] ?? 0) \($0.rawValue)" }.joined(separator: ", ")

        // The Markdown summary's counts and calls.
        selected = Format.count(c.selected)
        retried = Format.count(c.retried)
        succeeded = Format.count(c.succeeded)
        failed = Format.count(c.failed)
        pending = Format.count(c.pending)
        exhausted = Format.count(c.exhausted)
        otherCount = Format.count(Self.otherCount(c))
        skipped = Format.count(c.skipped)
        carriedOver = Format.count(c.carriedOver)
        retryCalls = Format.count(s.apiCalls.retry)
        pollCalls = Format.count(s.apiCalls.poll)
        rateLimitedCalls = Format.count(s.apiCalls.rateLimited)
        totalCallsText = Self.totalCallsText(s.apiCalls)
        batchCallLines = (s.batchCalls ?? []).map(Self.batchCallLine)
        peakText = Self.peakText(report.rates)

        rates = report.rates.map(Self.rateChart)
        outcome = Self.outcome(report.secondsToOutcome)
        codes = Self.codes(report.failedByCode)
        hasCodes = !codes.isEmpty
        rejected = report.rejectedByCode.sorted { $0.value > $1.value }.map {
            Rejected(code: Sanitize.text($0.key), count: $0.value)
        }
        hasRejected = !rejected.isEmpty
        cost = Self.cost(report.cost)
        comparison = report.previous.map { Self.comparison(s, previous: $0) }

        let attentionTotal = report.attention.count
        attentionCount = attentionTotal
        hasAttention = attentionTotal > 0
        attentionByCategory = Self.attentionByCategory(report.attention)
        attention = report.attention.prefix(Self.attentionShown).map(Self.attentionRow)
        attentionShownCount = attention.count
        attentionGroups = Self.attentionGroups(report.attention)
        attentionMore = attentionTotal > Self.attentionShown
        attentionMoreCount = max(0, attentionTotal - Self.attentionShown)
        unknownStatuses = report.unknownStatuses.map {
            Unknown(
                campaignId: Sanitize.text($0.campaignId), messageId: Sanitize.text($0.messageId), status: Sanitize.text($0.status)
            )
        }
        hasUnknownStatuses = !unknownStatuses.isEmpty
    }

    // MARK: - Headline

    static func tiles(_ report: RunReport) -> [Tile] {
        let c = report.summary.counts
        let attentionTotal = report.attention.count
        return [
            Tile(value: Format.count(c.selected), caption: "selected for retry", tileClass: ""),
            Tile(value: Format.count(c.retried), caption: "retried (accepted by Postman)", tileClass: ""),
            Tile(
                value: Format.count(c.succeeded), caption: "succeeded (\(Format.percent(c.succeeded, of: c.retried)) of retried)",
                tileClass: "good"),
            Tile(value: Format.count(c.failed), caption: "failed again", tileClass: c.failed > 0 ? "bad" : ""),
            Tile(value: Format.count(c.pending), caption: "pending (no final status yet)", tileClass: ""),
            Tile(value: Format.count(attentionTotal), caption: "need a person", tileClass: attentionTotal > 0 ? "bad" : "good"),
            Tile(
                value: CostEstimate.format(report.cost.total),
                caption: "estimated cost, \(report.cost.model.currency) incl. GST", tileClass: "")
        ]
    }

    // MARK: - Outcomes per campaign

    /// Outcome bars: only the kinds that occur anywhere get a legend entry.
    static func outcomeBars(_ campaigns: [RunSummary.Campaign]) -> (legend: [LegendItem], bars: [Bar]) {
        let kinds = outcomeKinds.filter { kind in campaigns.contains { value(of: kind.key, in: $0) > 0 } }
        let widest = campaigns.map { $0.selected + $0.skipped }.max() ?? 0
        let bars = campaigns.filter { $0.selected + $0.skipped > 0 }.map { campaign in
            var x = 0.0
            var segments: [Segment] = []
            var described: [String] = []
            for kind in kinds {
                let n = value(of: kind.key, in: campaign)
                guard n > 0 else { continue }
                // Bars share one scale, so campaigns compare by length as well as by mix.
                let width = Double(n) / Double(widest) * 1000
                segments.append(Segment(x: number(x), width: number(width), color: kind.color, name: kind.name, count: n))
                described.append("\(n) \(kind.name)")
                x += width
            }
            return Bar(
                campaignId: Sanitize.text(campaign.campaignId),
                caption: "\(Format.count(campaign.selected)) selected, \(Format.count(campaign.skipped)) skipped",
                ariaLabel: Sanitize.text(campaign.campaignId) + ": " + described.joined(separator: ", "), segments: segments)
        }
        return (kinds.map { LegendItem(name: $0.name, color: $0.color) }, bars)
    }

    static func campaignRow(_ campaign: RunSummary.Campaign) -> CampaignRow {
        CampaignRow(
            campaignId: Sanitize.text(campaign.campaignId), selected: Format.count(campaign.selected),
            succeeded: Format.count(campaign.succeeded), failed: Format.count(campaign.failed),
            pending: Format.count(campaign.pending), exhausted: Format.count(campaign.exhausted),
            other: Format.count(otherCount(campaign)), skipped: Format.count(campaign.skipped),
            carriedOver: Format.count(campaign.carriedOver))
    }

    // MARK: - Requests

    static func totalCallsText(_ calls: RunSummary.APICalls) -> String {
        let batchRetries = calls.batchRetry > 0 ? ", \(Format.count(calls.batchRetry)) whole-batch retry" : ""
        return
            "In all: \(Format.count(calls.retry + calls.poll + calls.batchRetry)) requests (\(Format.count(calls.retry)) retry\(batchRetries), \(Format.count(calls.poll)) read), "
            + "\(Format.count(calls.rateLimited)) answered 429."
    }

    static func batchCallLine(_ call: RunSummary.BatchCall) -> String {
        "Batch \(Sanitize.text(call.batchId)) of \(Sanitize.text(call.campaignId)): \(Format.count(call.members)) members in one call at \(call.at)"
            + (call.httpStatus.map { ", answered \($0)" }
                ?? (call.postmanCode == "answer_lost" ? ", answer lost (a timeout or a dropped connection)" : ", answer unknown"))
            + (call.postmanCode.flatMap { $0 == "answer_lost" ? nil : " \(Sanitize.text($0))" } ?? "")
    }

    static func peakText(_ rates: [RunReport.CampaignRate]) -> String {
        rates.isEmpty
            ? "no requests"
            : rates.map { rate in
                Sanitize.text(rate.campaignId) + " " + "\(rate.peak)/s" + (rate.rateLimit.map { " (limit \($0))" } ?? "")
            }.joined(separator: ", ")
    }

    // MARK: - Error codes

    /// Retries that failed again, by code, most frequent first; each with what the catalogue says of it.
    static func codes(_ failedByCode: [String: Int]) -> [Code] {
        let failedCodes = failedByCode.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
        return failedCodes.enumerated().map { index, entry in
            let info = ErrorCatalog.info(entry.key.isEmpty ? nil : entry.key)
            let worth: String
            switch info.worthRetrying {
            case .yes: worth = "yes"
            case .no: worth = "no: retrying cannot help"
            case .maybe: worth = "maybe"
            case .unknown: worth = "unknown code"
            }
            return Code(
                code: entry.key.isEmpty ? "(no code)" : Sanitize.text(entry.key), count: entry.value, meaning: info.meaning,
                worth: worth,
                worthShort: info.worthRetrying == .unknown ? "unknown code" : "worth retrying: \(info.worthRetrying.rawValue)",
                worthClass: info.worthRetrying.rawValue, charged: info.charged.map { $0 ? "yes" : "no" } ?? "–",
                last: index == failedCodes.count - 1)
        }
    }

    // MARK: - Cost

    static func cost(_ cost: CostEstimate) -> Cost {
        let model = cost.model
        let perSegment = model.segmentsPerMessage == 1 ? "" : " × \(model.segmentsPerMessage) segments"
        return Cost(
            currency: model.currency,
            lines: [
                CostLine(
                    what: "local (+\(model.localPrefix))", messages: Format.count(cost.localCharged),
                    price: CostEstimate.format(model.localPerSegment, scale: 3) + perSegment,
                    amount: CostEstimate.format(cost.localAmount)),
                CostLine(
                    what: "foreign", messages: Format.count(cost.foreignCharged),
                    price: CostEstimate.format(model.foreignPerSegment, scale: 3) + perSegment,
                    amount: CostEstimate.format(cost.foreignAmount)),
                CostLine(
                    what: "not billed (" + model.freeCodes.sorted().joined(separator: ", ") + ")",
                    messages: Format.count(cost.notCharged), price: "0", amount: "0.00")
            ],
            subtotal: CostEstimate.format(cost.subtotal), gst: CostEstimate.format(cost.gst),
            gstRate: CostEstimate.format(model.gstRate * 100, scale: 0) + "%", total: CostEstimate.format(cost.total),
            localCount: cost.localCharged, foreignCount: cost.foreignCharged, freeCount: cost.notCharged,
            assumptions:
                "Every retry Postman accepted in this run, \(model.segmentsPerMessage) segment(s) each, priced by number "
                + "(\(model.localPrefix)… local). Retries still pending are counted as billed. Retries carried over from "
                + "earlier runs were counted there. An estimate, not an invoice.")
    }

    // MARK: - Against the previous run

    static func comparison(_ s: RunSummary, previous: RunSummary) -> Comparison {
        let c = s.counts
        let p = previous.counts
        func row(_ metric: String, _ now: Int, _ before: Int, upIsBad: Bool?) -> ComparisonRow {
            let cls: String
            if let upIsBad, now != before { cls = (now > before) == upIsBad ? "delta-bad" : "delta-good" } else { cls = "" }
            return ComparisonRow(
                metric: metric, now: Format.count(now), before: Format.count(before), delta: Format.delta(now, before),
                deltaClass: cls)
        }
        let rate = { (part: Int, whole: Int) in Format.percent(part, of: whole) }
        let failureDelta = c.failed - p.failed
        let direction =
            failureDelta > 0
            ? "up by \(Format.count(failureDelta))" : failureDelta < 0 ? "down by \(Format.count(-failureDelta))" : "unchanged"
        return Comparison(
            previousId: previous.runId,
            headline:
                "Failures \(direction) since run \(previous.runId): \(Format.count(c.failed)) failed again "
                + "(\(rate(c.failed, c.retried)) of retried) against \(Format.count(p.failed)) (\(rate(p.failed, p.retried))).",
            rows: [
                row("selected", c.selected, p.selected, upIsBad: nil),
                row("retried", c.retried, p.retried, upIsBad: nil),
                row("succeeded", c.succeeded, p.succeeded, upIsBad: false),
                row("failed again", c.failed, p.failed, upIsBad: true),
                row("pending", c.pending, p.pending, upIsBad: true),
                row("exhausted", c.exhausted, p.exhausted, upIsBad: true),
                row("skipped", c.skipped, p.skipped, upIsBad: nil),
                row(
                    "API calls", s.apiCalls.retry + s.apiCalls.poll, previous.apiCalls.retry + previous.apiCalls.poll,
                    upIsBad: nil),
                row("answered 429", s.apiCalls.rateLimited, previous.apiCalls.rateLimited, upIsBad: true)
            ])
    }

    // MARK: - Needs a person

    static func attentionByCategory(_ attention: [RunReport.Attention]) -> [CategoryCount] {
        let categories = RunReport.Attention.Category.allCases.compactMap { category -> (String, Int)? in
            let n = attention.filter { $0.category == category }.count
            return n > 0 ? (categoryName(category), n) : nil
        }
        return categories.enumerated().map { index, entry in
            CategoryCount(name: entry.0, count: entry.1, last: index == categories.count - 1)
        }
    }

    static func attentionRow(_ row: RunReport.Attention) -> AttentionRow {
        AttentionRow(
            category: categoryName(row.category), campaignId: Sanitize.text(row.campaignId),
            messageId: Sanitize.text(row.messageId.isEmpty ? "row " + row.rowKey : row.messageId),
            recipient: row.recipientMasked, code: Sanitize.text(row.code))
    }

    /// One line per (what happened, code, action), largest first: the morning's to-do list.
    static func attentionGroups(_ attention: [RunReport.Attention]) -> [AttentionGroup] {
        var groups: [String: AttentionGroup] = [:]
        var order: [String] = []
        for row in attention {
            let key = [row.category.rawValue, row.code, row.suggestedAction].joined(separator: "\u{1F}")
            if groups[key] == nil {
                order.append(key)
                groups[key] = AttentionGroup(
                    name: categoryName(row.category), code: Sanitize.text(row.code), hasCode: !row.code.isEmpty, count: 0,
                    action: Sanitize.text(row.suggestedAction))
            }
            groups[key]!.count += 1
        }
        return order.compactMap { groups[$0] }.enumerated().sorted {
            $0.element.count != $1.element.count ? $0.element.count > $1.element.count : $0.offset < $1.offset
        }.map(\.element)
    }

    static func categoryName(_ category: RunReport.Attention.Category) -> String {
        switch category {
        case .writeConflict: return "outcome not written (row changed)"
        case .writeRefused: return "outcome not written (the table refused it)"
        case .permanentError: return "failed again, permanent code"
        case .failedAgain: return "failed again"
        case .exhausted: return "exhausted"
        case .notFound: return "not found in Postman"
        case .rejected: return "refused by Postman"
        case .conflict: return "not retried (row changed)"
        case .neverFinal: return "never final"
        case .malformed: return "malformed row"
        }
    }
}
