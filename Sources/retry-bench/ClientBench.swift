import ArgumentParser
import AsyncHTTPClient
import Foundation
import PostmanAPI

/// The HTTP path alone (issue 17): N reads of one message through `PostmanClient`, as the job makes them
/// (one shared `HTTPClient`, keep-alive), with nothing of the worker or the journal around them. Prints the
/// process's CPU per request, to set beside `bench/many-campaigns.sh`'s whole-job figure: what is left
/// between the two is the worker's, the journal's and the timers' share.
struct ClientCost: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "client", abstract: "CPU per request of PostmanClient alone against a running simulator.")

    @Option(help: "Postman API base URL (the simulator's).") var url: String
    @Option(help: "Campaign id.") var campaign = "campaign-1"
    @Option(help: "API key of the campaign.") var key = "key-campaign-1"
    @Option(help: "Message id to read.") var message = "message_campaign-1_1"
    @Option(help: "Requests to make.") var requests = 2_000
    @Option(help: "Milliseconds between the starts of two requests (0: back to back).") var intervalMs = 0
    @Option(help: "Requests in flight at once (one per campaign, as the job has).") var streams = 1
    @Option(help: "Requests made back to back at each start (the interval is then between bursts).") var burst = 1
    @Option(help: "Read list pages of this many messages instead of one message (0: one message).") var pageSize = 0

    func run() async throws {
        let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .postmanRetry)
        let client = PostmanClient(baseURL: url, httpClient: httpClient)
        // Warm up: the connection, the metadata caches.
        _ = try await client.getMessage(campaignId: campaign, messageId: message, apiKey: key)
        let before = Self.cpuSeconds()
        let started = ContinuousClock.now
        let perStream = requests / streams
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<streams {
                group.addTask {
                    var next = ContinuousClock.now
                    for index in 0..<perStream {
                        if intervalMs > 0, index % burst == 0 {
                            next = next.advanced(by: .milliseconds(intervalMs))
                            try await Task.sleep(until: next, clock: .continuous)
                        }
                        if pageSize > 0 {
                            _ = try await client.listCampaignMessages(
                                campaignId: campaign, limit: pageSize, after: nil, apiKey: key, fullyDecoding: { _ in false })
                        } else {
                            _ = try await client.getMessage(campaignId: campaign, messageId: message, apiKey: key)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let cpu = Self.cpuSeconds() - before
        let wall = ContinuousClock.now - started
        let made = perStream * streams
        print(
            String(
                format: "client: %d requests (%d stream(s), %d every %d ms, %@) in %.2f s: %.0f us CPU per request", made,
                streams, burst, intervalMs, pageSize > 0 ? "pages of \(pageSize)" : "one message",
                Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18, 1e6 * cpu / Double(made)))
        try await httpClient.shutdown()
    }

    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }
}
