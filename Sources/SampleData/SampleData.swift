import CivilTime
import Foundation
import PostmanSimulator

/// Generates a consistent pair: rows for the reference agency table and the simulator's data, with
/// every selection case of CONTRACT.md sections 3 and 4 mixed in. Deterministic for a seed.
public struct SampleData: Sendable {
    /// What a generated message is meant to exercise.
    public enum Kind: String, Sendable, CaseIterable {
        case retrySucceeds, retryFailsAgain, retryStuck, foreignSentToTelco
        case otp, retryLimit, permanentError, unknownErrorCode, malformedNegativeCount
        case batchNotRetryable, alreadyChangedInPostman, unknownToPostman, postmanAtLimit, stale, notFailed
        /// The table lags Postman: the row says 1 retry, Postman shows 2 (someone else retried).
        case tableLagsPostman
    }

    public struct Row: Sendable, Equatable {
        public var campaignId: String
        public var messageId: String
        public var batchId: String?
        public var recipient: String
        public var isOtp: Bool
        public var status: String
        public var retryCount: Int
        public var errorCode: String?
        public var createdAt: Date
        public var kind: Kind

        /// The reference table's columns, in `copyColumns` order, as COPY text.
        public var copyFields: [String?] {
            [
                campaignId, messageId, batchId, recipient, isOtp ? "t" : "f", status, String(retryCount), errorCode,
                Self.iso(createdAt), Self.iso(createdAt)
            ]
        }

        /// Whole seconds, UTC (a formatter per row made a million rows take minutes).
        static func iso(_ date: Date) -> String {
            ISOTime.formatUTC(Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down)))
        }
    }

    public static let copyColumns = [
        "campaign_id", "message_id", "batch_id", "recipient", "is_otp", "status", "retry_count", "error_code",
        "created_at", "updated_at"
    ]

    public var rows: [Row]
    public var simulator: SimulatorData

    /// The stale mix of production tables: the table lags Postman, or Postman already shows the
    /// message final, at 3 retries, unknown, or in a batch that is not retryable.
    public static let staleKinds: [Kind] = [
        .tableLagsPostman, .alreadyChangedInPostman, .postmanAtLimit, .unknownToPostman, .batchNotRetryable
    ]

    /// `mixed` puts one of every kind in each campaign (then fills with ordinary retries);
    /// otherwise every message is an ordinary failed message whose retry succeeds or fails again.
    /// `staleShare` (0-1) of the ordinary messages get a kind of the stale mix instead, and `history`
    /// older messages per campaign exist only in Postman (months of sends, out of every run's scope).
    public static func generate(
        campaigns: Int, messagesPerCampaign: Int, seed: UInt64, mixed: Bool, rateLimit: Int? = nil,
        now: Date = Date(), campaignPrefix: String = "campaign", staleShare: Double = 0, history: Int = 0
    ) -> SampleData {
        var rng = SplitMix64(seed: seed)
        var rows: [Row] = []
        var data = SimulatorData()
        for c in 0..<campaigns {
            let campaign = "\(campaignPrefix)-\(c + 1)"
            data.campaigns.append(.init(id: campaign, apiKey: "key-\(campaign)", rateLimit: rateLimit))
            let goodBatch = "batch-\(campaign)-open"
            let closedBatch = "batch-\(campaign)-closed"
            data.batches.append(.init(id: goodBatch, campaignId: campaign, status: "messages_enqueued"))
            data.batches.append(.init(id: closedBatch, campaignId: campaign, status: "messages_processing"))
            for m in 0..<messagesPerCampaign {
                let kind: Kind
                if mixed && m < Kind.allCases.count && !(Kind.allCases[m] == .malformedNegativeCount && c > 1) {
                    // ids "." and ".." are unique in the table, so only two campaigns carry a malformed row
                    kind = Kind.allCases[m]
                } else if staleShare > 0, Double(rng.next() % 10_000) < staleShare * 10_000 {
                    kind = staleKinds[Int(rng.next() % UInt64(staleKinds.count))]
                } else {
                    kind = [.retrySucceeds, .retrySucceeds, .retrySucceeds, .retryFailsAgain][Int(rng.next() % 4)]
                }
                let id = "message_\(campaign)_\(m + 1)"
                let created = now.addingTimeInterval(kind == .stale ? -5 * 86400 : -Double(3600 + (messagesPerCampaign - m) * 2))
                let local = kind != .foreignSentToTelco
                let recipient =
                    local ? "65\(80_000_000 + Int(rng.next() % 9_999_999))" : "44\(7_000_000_000 + Int(rng.next() % 99_999_999))"
                var row = Row(
                    campaignId: campaign, messageId: id, batchId: m % 3 == 0 ? goodBatch : nil, recipient: recipient,
                    isOtp: false, status: "failure", retryCount: 0, errorCode: "recipient_unavailable", createdAt: created,
                    kind: kind)
                var postmanRetries = 0
                var postmanStatus = "failure"
                var outcomes: [String] = [rng.next() % 5 == 0 ? "failure:recipient_unavailable" : "success"]
                switch kind {
                case .retrySucceeds: outcomes = ["success"]
                case .retryFailsAgain: outcomes = ["failure:routing_error"]
                case .retryStuck: outcomes = ["stuck"]
                case .foreignSentToTelco: outcomes = ["success"]
                case .otp: row.isOtp = true
                case .retryLimit:
                    row.retryCount = 3
                    postmanRetries = 3
                case .permanentError: row.errorCode = "recipient_invalid"
                case .unknownErrorCode: row.errorCode = "SOMETHING_NEW"
                case .malformedNegativeCount: row.messageId = c == 0 ? "." : ".."
                case .batchNotRetryable: row.batchId = closedBatch
                case .alreadyChangedInPostman: postmanStatus = "success"
                case .unknownToPostman: break
                case .postmanAtLimit:
                    row.retryCount = 1
                    postmanRetries = 3
                case .tableLagsPostman:
                    row.retryCount = 1
                    postmanRetries = 2
                    outcomes = ["success"]
                case .stale, .notFailed: break
                }
                if kind == .notFailed {
                    row.status = "success"
                    row.errorCode = nil
                }
                rows.append(row)
                if kind == .unknownToPostman { continue }
                var attempts: [SimulatorData.Attempt] = []
                for a in 0...postmanRetries {
                    let isLast = a == postmanRetries
                    let status = isLast ? postmanStatus : "failure"
                    let code = status == "failure" ? (row.errorCode ?? "delivery_unknown_error") : nil
                    attempts.append(
                        .init(
                            status: status, errorType: code == nil ? nil : "delivery_error", errorCode: code,
                            createdAt: Row.iso(created.addingTimeInterval(Double(a) * 60))))
                }
                data.messages.append(
                    .init(
                        id: row.messageId, campaignId: campaign, batchId: row.batchId, recipient: recipient,
                        latestStatus: postmanStatus, retries: postmanRetries, attempts: attempts.reversed(),
                        outcomes: outcomes, createdAt: Row.iso(created)))
            }
            for h in 0..<history {
                // Delivered weeks ago; only Postman's list still carries them.
                let created = now.addingTimeInterval(-Double(30 * 86400 + (history - h) * 60))
                data.messages.append(
                    .init(
                        id: "old_\(campaign)_\(h + 1)", campaignId: campaign, batchId: nil,
                        recipient: "65\(90_000_000 + h % 9_999_999)", latestStatus: "success", retries: 0,
                        attempts: [.init(status: "success", errorType: nil, errorCode: nil, createdAt: Row.iso(created))],
                        outcomes: ["success"], createdAt: Row.iso(created)))
            }
        }
        return SampleData(rows: rows, simulator: data)
    }
}

/// A small deterministic generator (SplitMix64), so the same seed gives the same data everywhere.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
