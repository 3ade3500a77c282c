/// Parses durations written as `30m`, `72h`, `45s`, `1h30m`, `500ms` or a plain number of seconds.
public func parseDuration(_ text: String) -> Duration? {
    let trimmed = text.trimmingSpaces()
    guard !trimmed.isEmpty else { return nil }
    if let seconds = Double(trimmed), seconds >= 0 { return .milliseconds(Int64((seconds * 1000).rounded())) }
    var total: Duration = .zero
    var number = ""
    var unit = ""
    var sawAny = false
    func flush() -> Bool {
        guard let value = Double(number), value >= 0 else { return false }
        let factor: Double
        switch unit {
        case "ms": factor = 0.001
        case "s": factor = 1
        case "m": factor = 60
        case "h": factor = 3600
        case "d": factor = 86400
        default: return false
        }
        total += .milliseconds(Int64((value * factor * 1000).rounded()))
        number = ""
        unit = ""
        sawAny = true
        return true
    }
    for ch in trimmed {
        if ch.isNumber || ch == "." {
            if !unit.isEmpty { guard flush() else { return nil } }
            number.append(ch)
        } else if ch.isLetter {
            guard !number.isEmpty else { return nil }
            unit.append(ch)
        } else {
            return nil
        }
    }
    guard !number.isEmpty, flush() else { return nil }
    return sawAny ? total : nil
}

extension Duration {
    /// Seconds as a Double (for arithmetic with wall-clock times).
    public var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}

extension String {
    func trimmingSpaces() -> String {
        var text = Substring(self)
        while text.first?.isWhitespace == true { text.removeFirst() }
        while text.last?.isWhitespace == true { text.removeLast() }
        return String(text)
    }
}
