import Foundation

/// The report's charts: request rate per campaign and time to outcome, as SVG coordinates.
extension ReportView {
    static func rateChart(_ rate: RunReport.CampaignRate) -> RateChart {
        let seconds = rate.seconds
        let span = (seconds.map(\.offset).max() ?? 0) + 1
        let slice = max(1, Int((Double(span) / Double(Chart.maxColumns)).rounded(.up)))
        let columns = (span + slice - 1) / slice
        var peakPerColumn = [Int](repeating: 0, count: columns)
        var limitedColumns = Set<Int>()
        for second in seconds {
            let column = second.offset / slice
            peakPerColumn[column] = max(peakPerColumn[column], second.requests)
            if second.rateLimited > 0 { limitedColumns.insert(column) }
        }
        let peak = peakPerColumn.max() ?? 0
        // Headroom above the limit or the peak, rounded up to a whole tick.
        let highest = Double(max(peak, rate.rateLimit ?? 0, 1))
        let yStep = max(1, Self.niceCeiling(highest / 4))
        let top = (highest * 1.15 / yStep).rounded(.up) * yStep
        let plotWidth = Double(Chart.right - Chart.left)
        let plotHeight = Double(Chart.bottom - Chart.top)
        func x(_ column: Int) -> Double { Double(Chart.left) + Double(column) / Double(columns) * plotWidth }
        func y(_ value: Int) -> Double { Double(Chart.bottom) - Double(value) / top * plotHeight }
        // A step line: flat across each column.
        var points: [String] = []
        for (column, value) in peakPerColumn.enumerated() {
            points.append("\(number(x(column))),\(number(y(value)))")
            points.append("\(number(x(column + 1))),\(number(y(value)))")
        }
        let yTicks = stride(from: 0.0, through: top, by: yStep).map { value in
            Tick(
                pos: number(y(Int(value))), textPos: number(y(Int(value)) + 4), labelPos: String(Chart.left - 6),
                text: String(Int(value)))
        }
        let xStep = Self.niceCeiling(Double(span) / 5)
        let xTicks = stride(from: 0.0, through: Double(span), by: max(1, xStep)).map { value in
            Tick(
                pos: number(Double(Chart.left) + value / Double(span) * plotWidth), textPos: String(Chart.bottom + 18),
                labelPos: "", text: Format.duration(value).replacingOccurrences(of: ".0s", with: "s"))
        }
        let sliceNote = slice > 1 ? "; each point is the busiest second of \(slice)" : ""
        let caption =
            "\(Format.count(rate.requests)) requests, peak \(peak)/s" + (rate.rateLimit.map { " of \($0)/s allowed" } ?? "")
            + (rate.rateLimited > 0 ? ", \(rate.rateLimited) answered 429" : "") + sliceNote
        return RateChart(
            campaignId: Sanitize.text(rate.campaignId), caption: caption,
            ariaLabel: "Requests per second for " + Sanitize.text(rate.campaignId) + ": " + caption,
            hasSeconds: !seconds.isEmpty, yTicks: yTicks, xTicks: xTicks, points: points.joined(separator: " "),
            marks: limitedColumns.sorted().map { Mark(pos: number(x($0) + (x($0 + 1) - x($0)) / 2)) },
            hasLimit: rate.rateLimit != nil, limit: rate.rateLimit.map(String.init) ?? "",
            limitY: number(y(rate.rateLimit ?? 0)), limitTextY: number(y(rate.rateLimit ?? 0) - 5))
    }

    /// 1, 2, 5, 10, 20, 50… at or above `value`.
    static func niceCeiling(_ value: Double) -> Double {
        guard value > 1 else { return 1 }
        let magnitude = pow(10, floor(log10(value)))
        for step in [1.0, 2, 5, 10] where step * magnitude >= value { return step * magnitude }
        return 10 * magnitude
    }

    static let outcomeBuckets: [(upTo: Double, label: String)] = [
        (2, "under 2 s"), (5, "2–5 s"), (10, "5–10 s"), (30, "10–30 s"), (60, "30 s–1 min"), (120, "1–2 min"),
        (300, "2–5 min"), (600, "5–10 min"), (1800, "10–30 min"), (.infinity, "30 min or more")
    ]

    static func outcome(_ sorted: [Double]) -> Outcome? {
        guard !sorted.isEmpty else { return nil }
        var counts = [Int](repeating: 0, count: outcomeBuckets.count)
        for value in sorted { counts[outcomeBuckets.firstIndex { value < $0.upTo } ?? outcomeBuckets.count - 1] += 1 }
        // Trim empty buckets at both ends, keep the ones between (gaps are information).
        let first = counts.firstIndex { $0 > 0 } ?? 0
        let last = counts.lastIndex { $0 > 0 } ?? 0
        let most = counts.max() ?? 1
        let buckets = (first...last).map { index in
            Bucket(
                range: outcomeBuckets[index].label, barWidth: number(Double(counts[index]) / Double(most) * 100),
                count: counts[index])
        }
        func quantile(_ q: Double) -> Double { sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * q).rounded()))] }
        return Outcome(
            count: sorted.count, median: Format.duration(quantile(0.5)), p90: Format.duration(quantile(0.9)),
            slowest: Format.duration(sorted.last ?? 0), buckets: buckets)
    }
}
