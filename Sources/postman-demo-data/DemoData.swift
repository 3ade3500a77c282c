import ArgumentParser
import Foundation
import PostmanSimulator
import SampleData

/// Writes sample data for the demo and the benchmarks: a CSV for the reference agency table and the
/// matching simulator data file.
@main
struct DemoData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "postman-demo-data",
        abstract: "Generate sample agency rows (CSV for COPY) and the matching postman-sim data (JSON).")

    @Option(help: "Number of campaigns.") var campaigns = 3
    @Option(help: "Messages per campaign.") var messages = 200
    @Option(help: "Seed: the same seed gives the same data.") var seed: UInt64 = 1
    @Flag(help: "Every message is an ordinary failure (no OTP, exhausted, malformed … cases).") var plain = false
    @Option(help: "Rate limit written into the simulator data for every campaign.") var rateLimit: Int?
    @Option(
        help:
            "Share (0-1) of messages from the stale mix: table lags Postman, Postman already final, at 3 retries, unknown, batch blocked."
    )
    var staleShare = 0.0
    @Option(help: "Older messages per campaign that only the simulator holds (out of every run's scope).") var history = 0
    @Option(help: "Where to write the CSV rows.") var rows: String
    @Option(help: "Where to write the simulator data.") var simulatorData: String

    func run() throws {
        let data = SampleData.generate(
            campaigns: campaigns, messagesPerCampaign: messages, seed: seed, mixed: !plain, rateLimit: rateLimit,
            staleShare: staleShare, history: history)
        var csv = SampleData.copyColumns.joined(separator: ",") + "\n"
        for row in data.rows {
            var first = true
            for field in row.copyFields {
                if !first { csv += "," }
                first = false
                guard let field else { continue }
                // Foundation's replacingOccurrences goes through ICU: most of a million rows' time.
                csv +=
                    "\""
                    + (field.contains("\"")
                        ? field.split(separator: "\"", omittingEmptySubsequences: false).joined(separator: "\"\"") : field) + "\""
            }
            csv += "\n"
        }
        try csv.write(toFile: rows, atomically: true, encoding: .utf8)
        try data.simulator.encoded(pretty: false).write(to: URL(fileURLWithPath: simulatorData))
        print("wrote \(data.rows.count) rows to \(rows) and \(data.simulator.messages.count) messages to \(simulatorData)")
    }
}
