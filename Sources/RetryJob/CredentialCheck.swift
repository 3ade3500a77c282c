import Foundation
import LibPQ
import Logging
import PostmanAPI
import RetryJournal
import RetrySettings

/// `config check --check-keys`: one request per campaign (`GET /campaigns/{id}/messages?limit=1`, a read
/// that changes nothing) to learn whether Postman accepts the campaign's key from this machine, before a
/// night's run finds out (CONTRACT.md section 5). Goes through the same client as `run`: proxy, CA files,
/// the certificate check and the key-prefix check included.
public enum CredentialCheck {
    public enum Verdict: Sendable, Equatable {
        case accepted
        /// No key is set for the campaign here.
        case noKey(variables: [String])
        /// 401/403 or a refusal code: the key, or this machine's source IP, is refused.
        case refused(String)
        /// Any other answer (404: no such campaign for this key; 5xx; timeout).
        case failed(String)
    }

    /// The campaigns the agency table names (at most `limit`, in order), when no campaign is named.
    public static func campaigns(in table: AgencyTable, db: PGConnection, limit: Int) async throws -> [String] {
        try await db.query(
            """
            SELECT DISTINCT \(fragment: table.column(table.campaignId))::text AS campaign FROM \(fragment: table.tableSQL) a
            WHERE \(fragment: table.column(table.campaignId)) IS NOT NULL ORDER BY 1 LIMIT \(limit)
            """
        ).map { try $0.decode("campaign") }
    }

    /// The reads share each campaign's rate budget with any run: the check holds the run like a plain
    /// run does (exit 75 while one works), waits as a new run would before its first request, and sends
    /// only while it holds it. A database without the hold's table (before V007) can have no run of a
    /// version that holds it working, and nothing is held there; one with the table but a later migration
    /// pending may have an older binary working (during an upgrade), so the check holds the run there too.
    public static func run(settings: RunSettings, campaigns: [String], db: PGConnection, logger: Logger) async throws
        -> [(campaign: String, verdict: Verdict)]
    {
        let pending = try await Migrator().pending(db)
        guard !pending.contains("V007__run_holders.sql") else {
            return try await run(settings: settings, campaigns: campaigns, logger: logger, holder: nil)
        }
        let name = "config-check:\(ProcessInfo.processInfo.hostName):\(getpid())"
        return try await RunHolder.holding(
            db: db, workerId: name, mode: .exclusive, sendDelay: settings.longestSendDelay, logger: logger,
            takeoverStamps: !pending.contains("V011__takeover_stamp.sql")
        ) { holder in
            let wait = holder.firstSendAllowed - .now
            if wait > .zero { try await Task.sleep(for: wait) }
            return try await run(settings: settings, campaigns: campaigns, logger: logger, holder: holder)
        }
    }

    static func run(settings: RunSettings, campaigns: [String], logger: Logger, holder: RunHolder?) async throws -> [(
        campaign: String, verdict: Verdict
    )] {
        try await RetryRun.withHTTPClient(settings: settings, logger: logger) { httpClient in
            let client = PostmanClient(
                baseURL: settings.apiURL, httpClient: httpClient, requestTimeout: settings.requestTimeout, logger: logger,
                onUnanswered: { holder?.noteUnansweredRequest() })
            var verdicts: [(campaign: String, verdict: Verdict)] = []
            for campaign in campaigns {
                // A check whose hold's heartbeat fails sends nothing more, as a run would not.
                try await holder?.waitUntilMaySend()
                guard let key = settings.apiKeys.key(for: campaign) else {
                    verdicts.append((campaign, .noKey(variables: settings.apiKeys.variablesToSet(for: [campaign]))))
                    continue
                }
                do {
                    _ = try await client.listCampaignMessages(campaignId: campaign, limit: 1, after: nil, apiKey: key)
                    verdicts.append((campaign, .accepted))
                } catch let error as PostmanAPIError where error.isCredentialRefusal {
                    verdicts.append((campaign, .refused("\(error)")))
                } catch {
                    verdicts.append((campaign, .failed("\(error)")))
                }
            }
            return verdicts
        }
    }
}
