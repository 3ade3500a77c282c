/// What Postman's delivery error codes mean, whether a retry is worth it, and whether the failed
/// attempt is billed: `postman-v2-api.md` section 4 (Postman's "Message delivery errors" page) and
/// section 8 (pricing). Codes outside the table are unknown: the job does not retry them by default.
/// The one list of codes: `ErrorPolicy.default` (which rows the selection retries) is read from it,
/// and the reports show it.
public struct ErrorCodeInfo: Sendable, Equatable {
    public enum Worth: String, Sendable {
        case yes, no, maybe, unknown
    }

    public var code: String
    public var type: String
    public var meaning: String
    public var worthRetrying: Worth
    public var charged: Bool?
    /// What a person should do about a message whose last attempt failed with this code.
    public var action: String
}

public enum ErrorCatalog {
    public static let deliveryErrors: [ErrorCodeInfo] = [
        ErrorCodeInfo(
            code: "recipient_invalid", type: "delivery_error",
            meaning: "The operator does not recognise the number (deactivated, invalid, or wrong format).",
            worthRetrying: .no, charged: true,
            action: "Verify the number with the recipient and correct it; do not retry (each attempt is billed)."),
        ErrorCodeInfo(
            code: "recipient_unavailable", type: "delivery_error",
            meaning: "The phone is not on the network: out of coverage, telco issue, SIM or device fault.",
            worthRetrying: .yes, charged: true,
            action: "Retry later if retries are left; otherwise send a new message or use another channel."),
        ErrorCodeInfo(
            code: "content_invalid", type: "delivery_error",
            meaning: "The content has prohibited elements or the wrong encoding; the network blocks it.",
            worthRetrying: .no, charged: true,
            action: "Fix the template or its values, then send a new message; do not retry."),
        ErrorCodeInfo(
            code: "routing_error", type: "delivery_error",
            meaning: "The route to the recipient's operator failed (Postman's text not retrieved).",
            worthRetrying: .maybe, charged: true,
            action: "Retry later if retries are left; if it repeats, raise it with Postman support."),
        ErrorCodeInfo(
            code: "message_expired", type: "delivery_error",
            meaning: "The validity period ran out before delivery (Postman's text not retrieved).",
            worthRetrying: .maybe, charged: true,
            action: "Check the message is still relevant, then retry or send a new message."),
        ErrorCodeInfo(
            code: "delivery_unknown_error", type: "delivery_error", meaning: "Unknown delivery error.",
            worthRetrying: .maybe, charged: false,
            action: "Retry later if retries are left; not billed. If it persists, raise it with Postman support."),
        ErrorCodeInfo(
            code: "server_unknown_error", type: "server_error", meaning: "Unknown Postman (server-side) error.",
            worthRetrying: .maybe, charged: false,
            action: "Retry later if retries are left; not billed. Check status.postman.gov.sg for incidents.")
    ]

    /// Postman API answers (HTTP 400) that end a message's retry in a run.
    public static let apiErrors: [ErrorCodeInfo] = [
        ErrorCodeInfo(
            code: "too_many_message_attempts_error", type: "api_error",
            meaning: "Postman allows no more retries (\(SelectionRules.retryLimit) used).", worthRetrying: .no, charged: nil,
            action: "Accept the failure, or send a new message (new id; the recipient may get it twice)."),
        ErrorCodeInfo(
            code: "message_not_found_or_retry_message_not_in_failure_status", type: "api_error",
            meaning: "Postman does not know the message id, or the message is no longer in failure.",
            worthRetrying: .no, charged: nil,
            action: "Check the row's message_id and campaign against Postman."),
        ErrorCodeInfo(
            code: "batch_not_found_or_is_not_retryable", type: "api_error",
            meaning: "The batch does not exist or is still processing.", worthRetrying: .maybe, charged: nil,
            action: "Wait for the batch to finish; a later run retries its messages.")
    ]

    private static let byCode: [String: ErrorCodeInfo] = Dictionary(
        uniqueKeysWithValues: (deliveryErrors + apiErrors).map { ($0.code, $0) })

    /// The entry for `code`; an unknown code gets a generic entry that says so.
    public static func info(_ code: String?) -> ErrorCodeInfo {
        guard let code, !code.isEmpty else {
            return ErrorCodeInfo(
                code: code ?? "", type: "", meaning: "No error code recorded.", worthRetrying: .unknown, charged: nil,
                action: "Look the message up in Postman to see why it failed.")
        }
        if let known = byCode[code] { return known }
        return ErrorCodeInfo(
            code: code, type: "", meaning: "Not a code Postman documents; the job does not retry it by default.",
            worthRetrying: .unknown, charged: nil,
            action: "Look the message up in Postman; add the code to the config's lists once it is understood.")
    }
}
