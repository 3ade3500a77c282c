import Foundation
import Mustache
import RetryCore
import RetryJournal
import RetrySettings

/// summary.json: the keys CONTRACT.md section 5 fixes (from `RunSummary`, unchanged), then what the
/// report adds. Described by docs/summary.schema.json.
struct SummaryDocument: Encodable {
    struct Rate: Encodable {
        var campaignId: String
        var rateLimit: Int?
        var requests: Int
        var rateLimited: Int
        var peakPerSecond: Int
        var secondsWithRequests: Int
        enum CodingKeys: String, CodingKey {
            case campaignId = "campaign_id"
            case rateLimit = "rate_limit"
            case requests
            case rateLimited = "rate_limited"
            case peakPerSecond = "peak_per_second"
            case secondsWithRequests = "seconds_with_requests"
        }
    }
    struct TimeToOutcome: Encodable {
        var count: Int
        var medianSeconds: Double?
        var p90Seconds: Double?
        var maxSeconds: Double?
        enum CodingKeys: String, CodingKey {
            case count
            case medianSeconds = "median_seconds"
            case p90Seconds = "p90_seconds"
            case maxSeconds = "max_seconds"
        }
        // Explicit so that a run with no outcome yet writes null (as the schema has it), not nothing.
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(count, forKey: .count)
            try c.encode(medianSeconds, forKey: .medianSeconds)
            try c.encode(p90Seconds, forKey: .p90Seconds)
            try c.encode(maxSeconds, forKey: .maxSeconds)
        }
    }
    struct Cost: Encodable {
        var currency: String
        var segmentsPerMessage: Int
        var localPerSegment: Double
        var foreignPerSegment: Double
        var gstRate: Double
        var localMessages: Int
        var foreignMessages: Int
        var notChargedMessages: Int
        var subtotal: Double
        var gst: Double
        var total: Double
        enum CodingKeys: String, CodingKey {
            case currency
            case segmentsPerMessage = "segments_per_message"
            case localPerSegment = "local_per_segment"
            case foreignPerSegment = "foreign_per_segment"
            case gstRate = "gst_rate"
            case localMessages = "local_messages"
            case foreignMessages = "foreign_messages"
            case notChargedMessages = "not_charged_messages"
            case subtotal, gst, total
        }
    }
    struct Previous: Encodable {
        var runId: String
        var counts: RunSummary.Counts
        var failedChange: Int
        enum CodingKeys: String, CodingKey {
            case runId = "run_id"
            case counts
            case failedChange = "failed_change"
        }
    }
    struct Unknown: Encodable {
        var campaignId: String, messageId: String, status: String
        enum CodingKeys: String, CodingKey {
            case campaignId = "campaign_id"
            case messageId = "message_id"
            case status
        }
    }
    struct Malformed: Encodable {
        var rowKey: String, field: String, problem: String
        enum CodingKeys: String, CodingKey {
            case rowKey = "row_key"
            case field, problem
        }
    }

    // CONTRACT.md section 5
    var runId: String
    var startedAt: String
    var finishedAt: String?
    var status: String
    var counts: RunSummary.Counts
    var apiCalls: RunSummary.APICalls
    var campaigns: [RunSummary.Campaign]
    // added by the report
    var writeConflicts: Int
    var durationSeconds: Double?
    var processes: Int
    var failedByCode: [String: Int]
    var rejectedByCode: [String: Int]
    var needsAttention: Int
    var needsAttentionByCategory: [String: Int]
    var rates: [Rate]
    var timeToOutcome: TimeToOutcome
    var cost: Cost
    var previousRun: Previous?
    var unknownStatuses: [Unknown]
    var malformedRows: [Malformed]
    var generatedAt: String
    var batchCalls: [RunSummary.BatchCall]?

    enum CodingKeys: String, CodingKey {
        case runId = "run_id"
        case startedAt = "started_at"
        case finishedAt = "finished_at"
        case status, counts
        case apiCalls = "api_calls"
        case campaigns
        case writeConflicts = "write_conflicts"
        case durationSeconds = "duration_seconds"
        case processes
        case failedByCode = "failed_by_code"
        case rejectedByCode = "rejected_by_code"
        case needsAttention = "needs_attention"
        case needsAttentionByCategory = "needs_attention_by_category"
        case rates
        case timeToOutcome = "time_to_outcome"
        case cost
        case previousRun = "previous_run"
        case unknownStatuses = "unknown_statuses"
        case malformedRows = "malformed_rows"
        case generatedAt = "generated_at"
        case batchCalls = "batch_calls"
    }

    // Explicit so that a missing finished_at or previous run is written as null, not left out.
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(runId, forKey: .runId)
        try c.encode(startedAt, forKey: .startedAt)
        try c.encode(finishedAt, forKey: .finishedAt)
        try c.encode(status, forKey: .status)
        try c.encode(counts, forKey: .counts)
        try c.encode(apiCalls, forKey: .apiCalls)
        try c.encode(campaigns, forKey: .campaigns)
        try c.encode(writeConflicts, forKey: .writeConflicts)
        try c.encode(durationSeconds, forKey: .durationSeconds)
        try c.encode(processes, forKey: .processes)
        try c.encode(failedByCode, forKey: .failedByCode)
        try c.encode(rejectedByCode, forKey: .rejectedByCode)
        try c.encode(needsAttention, forKey: .needsAttention)
        try c.encode(needsAttentionByCategory, forKey: .needsAttentionByCategory)
        try c.encode(rates, forKey: .rates)
        try c.encode(timeToOutcome, forKey: .timeToOutcome)
        try c.encode(cost, forKey: .cost)
        try c.encode(previousRun, forKey: .previousRun)
        try c.encode(unknownStatuses, forKey: .unknownStatuses)
        try c.encode(malformedRows, forKey: .malformedRows)
        try c.encode(generatedAt, forKey: .generatedAt)
        try c.encodeIfPresent(batchCalls, forKey: .batchCalls)
    }

    init(_ report: RunReport) {
        let s = report.summary
        runId = s.runId
        startedAt = s.startedAt
        finishedAt = s.finishedAt
        status = s.status
        counts = s.counts
        apiCalls = s.apiCalls
        campaigns = s.campaigns
        writeConflicts = s.writeConflicts
        batchCalls = s.batchCalls
        durationSeconds = report.durationSeconds.map { ($0 * 1000).rounded() / 1000 }
        processes = report.processes
        failedByCode = report.failedByCode
        rejectedByCode = report.rejectedByCode
        needsAttention = report.attention.count
        needsAttentionByCategory = Dictionary(grouping: report.attention, by: \.category.rawValue).mapValues(\.count)
        rates = report.rates.map {
            Rate(
                campaignId: $0.campaignId, rateLimit: $0.rateLimit, requests: $0.requests, rateLimited: $0.rateLimited,
                peakPerSecond: $0.peak, secondsWithRequests: $0.seconds.filter { $0.requests > 0 }.count)
        }
        let sorted = report.secondsToOutcome
        func quantile(_ q: Double) -> Double? {
            guard !sorted.isEmpty else { return nil }
            return (sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * q).rounded()))] * 1000).rounded() / 1000
        }
        timeToOutcome = TimeToOutcome(
            count: sorted.count, medianSeconds: quantile(0.5), p90Seconds: quantile(0.9), maxSeconds: quantile(1))
        let cost = report.cost
        self.cost = Cost(
            currency: cost.model.currency, segmentsPerMessage: cost.model.segmentsPerMessage,
            localPerSegment: CostEstimate.number(cost.model.localPerSegment, scale: 6),
            foreignPerSegment: CostEstimate.number(cost.model.foreignPerSegment, scale: 6),
            gstRate: CostEstimate.number(cost.model.gstRate, scale: 6), localMessages: cost.localCharged,
            foreignMessages: cost.foreignCharged, notChargedMessages: cost.notCharged,
            subtotal: CostEstimate.number(cost.subtotal), gst: CostEstimate.number(cost.gst),
            total: CostEstimate.number(cost.total))
        previousRun = report.previous.map {
            Previous(runId: $0.runId, counts: $0.counts, failedChange: s.counts.failed - $0.counts.failed)
        }
        unknownStatuses = report.unknownStatuses.map {
            Unknown(campaignId: $0.campaignId, messageId: $0.messageId, status: $0.status)
        }
        malformedRows = report.malformed.map { Malformed(rowKey: $0.rowKey, field: $0.field, problem: $0.problem) }
        generatedAt = ISO8601DateFormatter().string(from: report.generatedAt)
    }
}

/// The four files of a report, rendered in memory.
public struct ReportFiles: Sendable {
    public static let names = ["summary.html", "summary.md", "summary.json", "failures.csv"]

    public var html: String
    public var markdown: String
    public var json: Data
    public var csv: String

    public init(_ report: RunReport) throws {
        let view = MustacheTree.make(ReportView(report))
        _ = MarkdownContentType.registered
        html = try MustacheTemplate(string: Templates.html).render(view)
        markdown = Self.tidyMarkdown(try MustacheTemplate(string: Templates.markdown).render(view))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        json = try encoder.encode(SummaryDocument(report)) + Data("\n".utf8)
        csv = Self.failuresCSV(report)
    }

    /// One row per message that needs a person (the header is always there).
    static let csvHeader = [
        "category", "campaign_id", "message_id", "batch_id", "row_key", "recipient", "code", "meaning",
        "worth_retrying", "retry_count", "written_back", "detail", "suggested_action"
    ]

    static func failuresCSV(_ report: RunReport) -> String {
        var out = CSV.record(csvHeader)
        for row in report.attention {
            out += CSV.record([
                row.category.rawValue, row.campaignId, row.messageId, row.batchId, row.rowKey, row.recipientMasked,
                row.code, row.meaning, row.worthRetrying, row.retryCount.map(String.init) ?? "",
                row.writtenBack ? "yes" : "no", row.detail, row.suggestedAction
            ])
        }
        return out
    }

    /// Blank lines left by sections that rendered nothing collapse to one.
    static func tidyMarkdown(_ text: String) -> String {
        var lines: [Substring] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.trimmingCharacters(in: .whitespaces).isEmpty, lines.last?.isEmpty ?? true { continue }
            lines.append(line.trimmingCharacters(in: .whitespaces).isEmpty ? "" : line)
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Writes the four files into `directory` (created if needed). Each goes to a temporary file in
    /// the same directory first and is renamed into place, so a reader never sees half a file.
    /// Returns the path of summary.html.
    @discardableResult
    public func write(to directory: URL) throws -> URL {
        let fm = FileManager.default
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        let contents: [(String, Data)] = [
            ("summary.json", json), ("failures.csv", Data(csv.utf8)), ("summary.md", Data(markdown.utf8)),
            ("summary.html", Data(html.utf8))
        ]
        for (name, data) in contents {
            let final = directory.appendingPathComponent(name)
            let temporary = directory.appendingPathComponent(".\(name).\(getpid()).tmp")
            try data.write(to: temporary)
            if rename(temporary.path, final.path) != 0 {
                let code = errno
                try? fm.removeItem(at: temporary)
                throw JobError(.failure, "cannot move the report into \(final.path): \(String(cString: strerror(code)))")
            }
        }
        return directory.appendingPathComponent("summary.html")
    }
}
