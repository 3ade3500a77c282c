import Foundation
import Logging
import RetryCore
import RetryJournal

/// Reports how far each campaign is: a table redrawn every second on a terminal, else one
/// structured log line every ten seconds.
final class ProgressReporter: @unchecked Sendable {
    // Only used from the one watcher task that owns it.
    private let logger: Logger
    private let live: Bool
    private let started: ContinuousClock.Instant
    private var last: ContinuousClock.Instant
    private var lastSent: [String: (requests: Int, at: ContinuousClock.Instant)] = [:]
    private var linesDrawn = 0

    init(logger: Logger, live: Bool, started: ContinuousClock.Instant) {
        self.logger = logger
        self.live = live
        self.started = started
        self.last = started
    }

    func due() -> Bool { ContinuousClock.now - last >= (live ? .seconds(1) : .seconds(10)) }

    func report(_ campaigns: [CampaignProgress]) {
        let now = ContinuousClock.now
        last = now
        var lines: [String] = []
        for c in campaigns {
            let previous = lastSent[c.campaign] ?? (0, started)
            let seconds = max(0.001, (now - previous.at).seconds)
            let rate = Double(c.requestsSent - previous.requests) / seconds
            lastSent[c.campaign] = (c.requestsSent, now)
            let eta = c.allowedRate > 0 ? Double(c.toSend) / c.allowedRate : 0
            if live {
                lines.append(
                    String(
                        format: "%-24@ retried %6d  final %6d  awaiting %5d  to send %6d  %5.1f req/s  ETA %5.0f s",
                        c.campaign as NSString, c.retried, c.settled, c.awaitingOutcome, c.toSend, rate, eta))
            } else {
                logger.info(
                    "progress",
                    metadata: [
                        "campaign": "\(c.campaign)", SummaryCount.retried.name: "\(c.retried)", "final": "\(c.settled)",
                        "awaiting_outcome": "\(c.awaitingOutcome)", "to_send": "\(c.toSend)",
                        "rate": "\(String(format: "%.1f", rate))", "eta_s": "\(Int(eta))"
                    ])
            }
        }
        if live {
            var text = linesDrawn > 0 ? "\u{1B}[\(linesDrawn)A" : ""
            text += lines.map { $0 + "\u{1B}[K\n" }.joined()
            linesDrawn = lines.count
            FileHandle.standardError.write(Data(text.utf8))
        }
    }

    func finish() {}
}
