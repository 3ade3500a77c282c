import CivilTime
import Foundation

// MARK: - Time

/// Timestamps are kept as milliseconds since 1970 so that what the simulator prints (millisecond
/// precision, `+08:00` like Postman's examples) parses back to exactly the same value (cursors rely on it).
/// The parser and the writer are `CivilTime`'s, shared with the job's client and its libpq layer.
enum SimTime {
    static let singaporeOffsetMs: Int64 = 8 * 3_600_000

    static func nowMillis() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
    }

    /// `2026-11-21T20:00:00.000+08:00`
    static func format(millis: Int64) -> String {
        ISOTime.format(milliseconds: millis, offsetSeconds: Int(singaporeOffsetMs / 1000))
    }

    /// Tolerant ISO 8601 (offset or Z, optional fraction), to whole milliseconds.
    static func parseMillis(_ string: String) -> Int64? { ISOTime.parseMilliseconds(string) }
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
