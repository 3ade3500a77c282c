import Foundation

// MARK: - Time

/// Timestamps are kept as milliseconds since 1970 so that what the simulator prints (millisecond
/// precision, `+08:00` like Postman's examples) parses back to exactly the same value (cursors rely on it).
enum SimTime {
    static let singaporeOffsetMs: Int64 = 8 * 3_600_000

    static func nowMillis() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
    }

    /// `2026-11-21T20:00:00.000+08:00`
    static func format(millis: Int64) -> String {
        let local = millis + singaporeOffsetMs
        let days = floorDiv(local, 86_400_000)
        let msOfDay = local - days * 86_400_000
        let (y, m, d) = civil(fromDays: days)
        let hour = msOfDay / 3_600_000
        let minute = (msOfDay / 60_000) % 60
        let second = (msOfDay / 1000) % 60
        let ms = msOfDay % 1000
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(hour, 2)):\(pad(minute, 2)):\(pad(second, 2)).\(pad(ms, 3))+08:00"
    }

    /// Tolerant ISO 8601 (offset or Z, optional fraction), to whole milliseconds.
    static func parseMillis(_ string: String) -> Int64? {
        let b = Array(string.utf8)
        var i = 0
        func digits(_ n: Int) -> Int64? {
            guard i + n <= b.count else { return nil }
            var v: Int64 = 0
            for k in 0..<n {
                let c = b[i + k]
                guard c >= 48, c <= 57 else { return nil }
                v = v * 10 + Int64(c - 48)
            }
            i += n
            return v
        }
        func skip(_ c: UInt8) -> Bool {
            guard i < b.count, b[i] == c else { return false }
            i += 1
            return true
        }
        guard let year = digits(4), skip(45), let month = digits(2), skip(45), let day = digits(2) else { return nil }
        guard i < b.count, b[i] == 84 || b[i] == 116 || b[i] == 32 else { return nil }
        i += 1
        guard let hour = digits(2), skip(58), let minute = digits(2) else { return nil }
        var second: Int64 = 0
        if skip(58) {
            guard let s = digits(2) else { return nil }
            second = s
        }
        var fractionMs: Int64 = 0
        if skip(46) {
            var scale: Int64 = 100
            var any = false
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                fractionMs += Int64(b[i] - 48) * scale
                scale /= 10
                i += 1
                any = true
            }
            guard any else { return nil }
        }
        var offsetMs: Int64 = 0
        if i < b.count {
            if b[i] == 90 || b[i] == 122 {
                i += 1
            } else if b[i] == 43 || b[i] == 45 {
                let sign: Int64 = b[i] == 45 ? -1 : 1
                i += 1
                guard let oh = digits(2) else { return nil }
                _ = skip(58)
                var om: Int64 = 0
                if i < b.count { guard let m = digits(2) else { return nil }; om = m }
                offsetMs = sign * (oh * 3_600_000 + om * 60_000)
            } else {
                return nil
            }
        }
        guard i == b.count, (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else {
            return nil
        }
        let days = daysFromCivil(year: year, month: month, day: day)
        return days * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1000 + fractionMs - offsetMs
    }

    private static func pad(_ v: Int64, _ width: Int) -> String {
        let s = String(v)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    private static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        a >= 0 ? a / b : (a - b + 1) / b
    }

    // Howard Hinnant's civil date algorithms.
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}

// MARK: - Deterministic randomness

/// SplitMix64: tiny, fast and fully determined by its seed (Swift's Hasher is randomised per process).
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    mutating func unit() -> Double {
        Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// A generator for one (seed, message, attempt): the draw does not depend on request order.
    static func forAttempt(seed: UInt64, messageId: String, attemptIndex: Int) -> SplitMix64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325  // FNV-1a
        for byte in messageId.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01B3
        }
        var g = SplitMix64(seed: seed ^ hash ^ (UInt64(attemptIndex) &* 0x9E37_79B9_7F4A_7C15))
        _ = g.next()
        return g
    }
}

// MARK: - Outcome scripts

/// One entry of an `outcomes` script: `success`, `sent_to_telco`, `failure:<code>` or `stuck`, optionally `@S`.
struct ScriptedOutcome: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
        case success
        case sentToTelco
        case failure(code: String)
        case stuck
    }

    var kind: Kind
    /// Seconds before `--time-scale`; nil = drawn from the latency distribution.
    var seconds: Double?

    init?(_ script: String) {
        var text = Substring(script.trimmingCharacters(in: .whitespaces))
        seconds = nil
        if let at = text.lastIndex(of: "@") {
            guard let s = Double(text[text.index(after: at)...]), s >= 0, s.isFinite else { return nil }
            seconds = s
            text = text[..<at]
        }
        switch text {
        case "success": kind = .success
        case "sent_to_telco": kind = .sentToTelco
        case "stuck": kind = .stuck
        default:
            guard text.hasPrefix("failure:") else { return nil }
            let code = String(text.dropFirst("failure:".count))
            guard !code.isEmpty else { return nil }
            kind = .failure(code: code)
        }
    }
}

/// Postman's error type for a delivery error code.
func errorType(forCode code: String) -> String {
    code == "server_unknown_error" ? "server_error" : "delivery_error"
}

// MARK: - Ring buffer of times (sliding windows)

/// FIFO of increasing times with O(1) amortised push/pop; used for the 1-second windows.
struct TimeWindow: Sendable {
    private var storage: [Double] = Array(repeating: 0, count: 16)
    private var head = 0
    private(set) var count = 0

    mutating func push(_ t: Double) {
        if count == storage.count {
            var grown = [Double](repeating: 0, count: storage.count * 2)
            for k in 0..<count { grown[k] = storage[(head + k) % storage.count] }
            storage = grown
            head = 0
        }
        storage[(head + count) % storage.count] = t
        count += 1
    }

    /// Drops every time `<= cutoff` (i.e. keeps the window (cutoff, now]).
    mutating func drop(upTo cutoff: Double) {
        while count > 0, storage[head] <= cutoff {
            head = (head + 1) % storage.count
            count -= 1
        }
    }
}
