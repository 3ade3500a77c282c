import Foundation
import LibPQ
import RetryJournal

/// `postman-retry runs`: past runs, newest first, each with the counts `RunSummary` reads back.
public struct RunHistory: Sendable, Encodable {
    public struct Entry: Sendable, Encodable {
        public var runId: String
        public var status: String
        public var startedAt: String
        public var finishedAt: String?
        public var durationSeconds: Double?
        /// Processes that worked on the run (more than one when it was interrupted and resumed).
        public var processes: Int
        public var lastError: String?
        public var counts: RunSummary.Counts
        public var apiCalls: RunSummary.APICalls

        enum CodingKeys: String, CodingKey {
            case runId = "run_id"
            case status
            case startedAt = "started_at"
            case finishedAt = "finished_at"
            case durationSeconds = "duration_seconds"
            case processes
            case lastError = "last_error"
            case counts
            case apiCalls = "api_calls"
        }
    }

    public var runs: [Entry]

    public static func load(db: PGConnection, limit: Int = 20) async throws -> RunHistory {
        var entries: [Entry] = []
        for row in try await HistoryReads.recentRuns(db: db, limit: limit) {
            let summary = try await RunSummary.load(db: db, runId: row.runId)
            entries.append(
                Entry(
                    runId: summary.runId, status: summary.status, startedAt: summary.startedAt,
                    finishedAt: summary.finishedAt, durationSeconds: row.durationSeconds,
                    processes: row.attempts, lastError: row.lastError,
                    counts: summary.counts, apiCalls: summary.apiCalls))
        }
        return RunHistory(runs: entries)
    }

    /// A fixed-width table for a terminal.
    public var text: String {
        guard !runs.isEmpty else { return "no runs yet" }
        let header = [
            "RUN", "STARTED (UTC)", "DURATION", "STATUS", "SELECTED", "RETRIED", "SUCCEEDED", "FAILED", "PENDING",
            "EXHAUSTED", "OTHER", "SKIPPED", "CARRIED", "CALLS"
        ]
        var table = [header]
        for run in runs {
            let c = run.counts
            let other = c.notFound + c.reconciled + c.batchNotRetryable + c.rejected + c.conflict
            table.append([
                run.runId, run.startedAt.replacingOccurrences(of: "T", with: " ").replacingOccurrences(of: "Z", with: ""),
                run.durationSeconds.map(Format.duration) ?? "-",
                run.status + (run.processes > 1 ? " (\(run.processes)×)" : ""), "\(c.selected)", "\(c.retried)",
                "\(c.succeeded)", "\(c.failed)", "\(c.pending)", "\(c.exhausted)", "\(other)", "\(c.skipped)",
                "\(c.carriedOver)", "\(run.apiCalls.retry + run.apiCalls.poll)"
            ])
        }
        let widths = header.indices.map { column in table.map { $0[column].count }.max() ?? 0 }
        return table.map { row in
            row.enumerated().map { column, cell in
                // Text columns left-aligned, numbers right-aligned.
                column == 1 || column == 3
                    ? cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[column] - cell.count) + cell
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

/// Number and time formatting shared by the report files.
enum Format {
    /// `3725` seconds as `1h 2m 5s`; under a minute with one decimal.
    static func duration(_ seconds: Double) -> String {
        if seconds < 60 { return String(format: "%.1fs", seconds) }
        let total = Int(seconds.rounded())
        let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60)
        if h > 0 { return "\(h)h \(m)m \(s)s" }
        return "\(m)m \(s)s"
    }

    /// `1234567` as `1,234,567`.
    static func count(_ n: Int) -> String {
        let digits = String(abs(n))
        var out = ""
        for (index, ch) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { out += "," }
            out.append(ch)
        }
        return (n < 0 ? "-" : "") + out
    }

    static func percent(_ part: Int, of whole: Int) -> String {
        guard whole > 0 else { return "–" }
        return String(format: "%.0f%%", Double(part) / Double(whole) * 100)
    }

    /// A change against the previous run: `+3`, `-2`, `±0`.
    static func delta(_ now: Int, _ before: Int) -> String {
        let d = now - before
        return d > 0 ? "+\(count(d))" : d < 0 ? "−\(count(-d))" : "±0"
    }
}
