/// Postman's `latestStatus` values and what they mean for the job (CONTRACT.md section 3).
public enum PostmanStatus {
    public static let known: Set<String> = [
        "created", "enqueued", "sending", "sent", "sent_to_telco", "success", "failure"
    ]

    /// `success` and `failure` are final; `sent_to_telco` is final for recipients outside Singapore.
    /// Everything else, including an unknown status, is in flight.
    public static func isFinal(_ status: String, recipient: String?) -> Bool {
        switch status {
        case "success", "failure": return true
        case "sent_to_telco": return !(recipient ?? "").hasPrefix("65")
        default: return false
        }
    }

    /// A final status that counts as `succeeded` (`success`, or a final `sent_to_telco`).
    public static func isSuccess(_ status: String) -> Bool { status == "success" || status == "sent_to_telco" }

    public static func isKnown(_ status: String) -> Bool { known.contains(status) }
}

/// Masks a phone number for logs and reports: country code and last four digits stay (`65****2222`).
public func maskPhone(_ number: String?) -> String {
    guard let number, !number.isEmpty else { return "" }
    let characters = Array(number)
    // A short number keeps only its first two digits: the lifecycle reads the country code from the masked
    // form (`sent_to_telco` is final outside Singapore), and a short "65…" number is still Singapore's.
    guard characters.count >= 5 else { return String(repeating: "*", count: min(characters.count, 4)) }
    guard characters.count >= 8 else { return String(characters.prefix(2)) + "****" }
    return String(characters.prefix(2)) + "****" + String(characters.suffix(4))
}

/// The environment variable that holds a campaign's own API key: `POSTMAN_API_KEY_<ID>`, the id
/// upper-cased with every non-alphanumeric character as `_`.
public func apiKeyVariableName(campaignId: String) -> String {
    var name = "POSTMAN_API_KEY_"
    for scalar in campaignId.uppercased().unicodeScalars {
        let isAlphanumeric = (scalar >= "A" && scalar <= "Z") || (scalar >= "0" && scalar <= "9")
        name.unicodeScalars.append(isAlphanumeric ? scalar : "_")
    }
    return name
}
