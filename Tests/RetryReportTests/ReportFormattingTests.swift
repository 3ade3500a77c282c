import EngineTestSupport
import Foundation
import Testing

@testable import RetryReport

/// The pure parts of the report: escaping, CSV quoting, cost arithmetic, chart scales.
@Suite struct ReportFormattingTests {
    @Test func csvQuotesPerRFC4180AndDefusesFormulas() throws {
        #expect(CSV.field("plain") == "plain")
        #expect(CSV.field("a,b") == "\"a,b\"")
        #expect(CSV.field("say \"hi\"") == "\"say \"\"hi\"\"\"")
        #expect(CSV.field("=SUM(A1:A9)") == "'=SUM(A1:A9)")
        #expect(CSV.field("+65 9123") == "'+65 9123")
        #expect(CSV.field("-1") == "'-1")
        #expect(CSV.field("@cmd") == "'@cmd")
        #expect(CSV.field("=HYPERLINK(\"x\",\"y\")") == "\"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\"")
        #expect(CSV.field("two\nlines") == "two lines", "a value stays on its line")
        #expect(CSV.field("crlf\r\nend") == "crlf  end")
        #expect(CSV.field("é, \u{202E}x") == "\"é, \u{FFFD}x\"", "non-ASCII text still has its controls replaced")
        let parsed = try CSVReader.parse(CSV.record(["a,b", "c\"d", "=1"]) + CSV.record(["x", "", "y"]))
        #expect(parsed == [["a,b", "c\"d", "'=1"], ["x", "", "y"]])
    }

    @Test func markdownEscapingKeepsTextAsText() {
        let md = MarkdownContentType()
        #expect(md.escapeText("<script>") == "\\<script\\>")
        #expect(md.escapeText("a|b") == "a\\|b")
        #expect(md.escapeText("*bold* _it_ `code` [l](u)") == "\\*bold\\* \\_it\\_ \\`code\\` \\[l\\](u)")
        #expect(md.escapeText("campaign-1 ok (retry_limit).") == "campaign-1 ok (retry_limit).", "ordinary text stays readable")
        #expect(md.escapeText("abc\u{202E}def") == "abc\u{FFFD}def")
        #expect(md.escapeText("🎉 שלום") == "🎉 שלום")
    }

    @Test func costFollowsPostmansPricing() {
        let estimate = CostEstimate(model: .postmanDefault, localCharged: 100, foreignCharged: 10, notCharged: 7)
        #expect(estimate.localAmount == Decimal(string: "4.6"))
        #expect(estimate.foreignAmount == Decimal(string: "2.3"))
        #expect(estimate.subtotal == Decimal(string: "6.9"))
        #expect(CostEstimate.format(estimate.gst) == "0.62")  // 9% of 6.90 = 0.621
        #expect(CostEstimate.format(estimate.total) == "7.52")
        var model = CostModel()
        model.segmentsPerMessage = 2
        model.gstRate = 0
        let twoSegments = CostEstimate(model: model, localCharged: 3, foreignCharged: 0, notCharged: 0)
        #expect(CostEstimate.format(twoSegments.total) == "0.28")  // 6 × 0.046 = 0.276
        #expect(CostEstimate.format(Decimal(12)) == "12.00")
        #expect(CostEstimate.format(Decimal(string: "0.046")!, scale: 3) == "0.046")
        #expect(CostEstimate.number(Decimal(string: "0.23")!) == 0.23)
        #expect(CostEstimate.number(Decimal(string: "29.08")!) == 29.08)
    }

    @Test func chartScalesAndDurationsReadWell() {
        #expect(ReportView.niceCeiling(11.5) == 20)
        #expect(ReportView.niceCeiling(3) == 5)
        #expect(ReportView.niceCeiling(0.4) == 1)
        #expect(Format.duration(4.25) == "4.2s" || Format.duration(4.25) == "4.3s")
        #expect(Format.duration(3725) == "1h 2m 5s")
        #expect(Format.count(1_234_567) == "1,234,567")
        #expect(Format.delta(3, 5) == "−2" && Format.delta(5, 3) == "+2" && Format.delta(4, 4) == "±0")
        let outcome = ReportView.outcome([0.5, 1, 3, 3, 40])
        #expect(outcome?.buckets.map(\.count) == [2, 2, 0, 0, 1], "empty buckets between are kept, not at the ends")
    }

    @Test func aLongRunIsDrawnInSlicesShowingTheBusiestSecond() {
        var seconds: [RunReport.Second] = []
        for offset in 0..<3000 {
            seconds.append(.init(offset: offset, requests: offset == 1234 ? 9 : 4, rateLimited: offset == 2000 ? 1 : 0))
        }
        let chart = ReportView.rateChart(.init(campaignId: "c", rateLimit: 10, seconds: seconds))
        let points = chart.points.split(separator: " ")
        #expect(points.count <= 2 * ReportView.Chart.maxColumns)
        #expect(chart.caption.contains("peak 9/s of 10/s allowed"))
        #expect(chart.marks.count == 1)
    }
}

@Suite struct SummarySchemaTests {
    /// The schema check in the report tests can fail: a document with a missing key, a wrong type or
    /// an unknown category is refused.
    @Test func theSchemaRefusesAWrongDocument() throws {
        let url = ReportFixture.repoRoot.appendingPathComponent("docs/summary.schema.json")
        let schema = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any] ?? [:]
        let validator = SchemaValidator(root: schema)
        #expect(validator.validate([String: Any]()).contains("$: missing run_id"))
        let wrong: [String: Any] = [
            "run_id": 1, "status": "done", "needs_attention_by_category": ["surprise": 1],
            "counts": ["selected": -1]
        ]
        let problems = validator.validate(wrong)
        #expect(problems.contains { $0.hasPrefix("$.run_id: not") })
        #expect(problems.contains { $0.hasPrefix("$.status: done not in") })
        #expect(problems.contains { $0.hasPrefix("$.needs_attention_by_category.surprise(name)") })
        #expect(problems.contains { $0.hasPrefix("$.counts.selected: -1") })
    }
}
