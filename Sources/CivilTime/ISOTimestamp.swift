import Foundation

/// One ISO 8601 / RFC 3339 time as written, the one parser the libpq layer, the Postman client and
/// the simulator share. Tolerant of what PostgreSQL and Postman write: `2026-11-21T20:00:00+08:00`,
/// `…00.123+08:00`, `…00Z`, `…00+0800`, `…00+08`, a space or a lower-case `t` instead of `T`, `z`
/// for `Z`, a comma for the decimal point, no seconds (`20:00+08:00`), an offset with seconds
/// (`+00:19:32`, which PostgreSQL writes for old local mean times). No zone means UTC
/// (PostgreSQL's `timestamp` without time zone, read as UTC).
///
/// Anything else is nil, rather than a guess: a date that does not exist (month 13, 30 February,
/// 29 February outside a leap year), an hour past 23, text before or after the time.
public struct ISOTimestamp: Sendable, Equatable {
    public var year: Int
    public var month: Int
    public var day: Int
    public var hour: Int
    public var minute: Int
    /// 0...60 (a leap second counts into the next minute).
    public var second: Int
    /// The fraction of the second, in [0, 1).
    public var fraction: Double
    /// The fraction to whole milliseconds, truncated (`.9999` is 999).
    public var fractionMilliseconds: Int
    /// Seconds east of UTC.
    public var offsetSeconds: Int

    /// Seconds since 1970-01-01T00:00:00Z.
    public var secondsSince1970: Double {
        Double(wholeSecondsSince1970) + fraction
    }

    /// Milliseconds since 1970-01-01T00:00:00Z, the fraction truncated to whole milliseconds.
    public var millisecondsSince1970: Int64 {
        Int64(wholeSecondsSince1970) * 1000 + Int64(fractionMilliseconds)
    }

    private var wholeSecondsSince1970: Int {
        CivilDate.days(year: year, month: month, day: day) * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
    }

    public static func parse(_ text: String) -> ISOTimestamp? {
        if let parsed = text.utf8.withContiguousStorageIfAvailable({ parse(bytes: $0) }) { return parsed }
        return Array(text.utf8).withUnsafeBufferPointer { parse(bytes: $0) }
    }

    static func parse(bytes b: UnsafeBufferPointer<UInt8>) -> ISOTimestamp? {
        var i = 0
        func digits(_ n: Int) -> Int? {
            guard i + n <= b.count else { return nil }
            var value = 0
            for k in 0..<n {
                let c = b[i + k]
                guard c >= 48, c <= 57 else { return nil }
                value = value * 10 + Int(c - 48)
            }
            i += n
            return value
        }
        func skip(_ c: UInt8) -> Bool {
            guard i < b.count, b[i] == c else { return false }
            i += 1
            return true
        }
        guard let year = digits(4), skip(UInt8(ascii: "-")), let month = digits(2), skip(UInt8(ascii: "-")),
            let day = digits(2)
        else { return nil }
        guard skip(UInt8(ascii: "T")) || skip(UInt8(ascii: "t")) || skip(UInt8(ascii: " ")) else { return nil }
        guard let hour = digits(2), skip(UInt8(ascii: ":")), let minute = digits(2) else { return nil }
        var second = 0
        if skip(UInt8(ascii: ":")) {
            guard let s = digits(2) else { return nil }
            second = s
        }
        var fraction = 0.0
        var fractionMilliseconds = 0
        if skip(UInt8(ascii: ".")) || skip(UInt8(ascii: ",")) {
            var scale = 0.1
            var millisecondScale = 100
            var any = false
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                let digit = Int(b[i] - 48)
                fraction += Double(digit) * scale
                scale /= 10
                fractionMilliseconds += digit * millisecondScale
                millisecondScale /= 10
                i += 1
                any = true
            }
            guard any else { return nil }
        }
        var offsetSeconds = 0
        if skip(UInt8(ascii: "Z")) || skip(UInt8(ascii: "z")) {
            // UTC
        } else if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
            let sign = b[i] == UInt8(ascii: "-") ? -1 : 1
            i += 1
            guard let hours = digits(2), hours < 24 else { return nil }
            var minutes = 0
            var seconds = 0
            let colon = skip(UInt8(ascii: ":"))
            if colon || i < b.count {
                guard let m = digits(2), m < 60 else { return nil }
                minutes = m
                if colon, skip(UInt8(ascii: ":")) {
                    guard let s = digits(2), s < 60 else { return nil }
                    seconds = s
                }
            }
            offsetSeconds = sign * (hours * 3600 + minutes * 60 + seconds)
        }
        guard i == b.count, (1...12).contains(month), day >= 1, day <= CivilDate.daysInMonth(year: year, month: month),
            hour < 24, minute < 60, second <= 60
        else { return nil }
        return ISOTimestamp(
            year: year, month: month, day: day, hour: hour, minute: minute, second: second, fraction: fraction,
            fractionMilliseconds: fractionMilliseconds, offsetSeconds: offsetSeconds)
    }
}

/// Parsing and writing times as text, for `Date` and for whole milliseconds.
public enum ISOTime {
    /// The time `text` names (`ISOTimestamp.parse`), or nil.
    public static func parse(_ text: String) -> Date? {
        ISOTimestamp.parse(text).map { Date(timeIntervalSince1970: $0.secondsSince1970) }
    }

    /// The time `text` names, in milliseconds since 1970 (the fraction truncated), or nil.
    public static func parseMilliseconds(_ text: String) -> Int64? {
        ISOTimestamp.parse(text)?.millisecondsSince1970
    }

    /// `2026-11-21T12:00:00.123456Z`: UTC, microseconds (rounded), what PostgreSQL reads back
    /// exactly (its own resolution).
    public static func formatUTC(_ date: Date) -> String {
        let total = date.timeIntervalSince1970
        var seconds = Int(total.rounded(.down))
        var micros = Int(((total - Double(seconds)) * 1_000_000).rounded())
        if micros >= 1_000_000 {
            seconds += 1
            micros -= 1_000_000
        }
        let days = CivilDate.floorDivide(seconds, 86_400)
        let secondsOfDay = seconds - days * 86_400
        let (y, m, d) = CivilDate.date(days: days)
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secondsOfDay / 3600, 2)):\(pad(secondsOfDay / 60 % 60, 2)):"
            + "\(pad(secondsOfDay % 60, 2)).\(pad(micros, 6))Z"
    }

    /// `2026-11-21T20:00:00.000+08:00`: milliseconds since 1970 shown at `offsetSeconds` east of UTC
    /// (whole minutes), milliseconds written out, as Postman writes its times.
    public static func format(milliseconds: Int64, offsetSeconds: Int) -> String {
        let local = Int(milliseconds) + offsetSeconds * 1000
        let days = CivilDate.floorDivide(local, 86_400_000)
        let msOfDay = local - days * 86_400_000
        let (y, m, d) = CivilDate.date(days: days)
        let hour = msOfDay / 3_600_000
        let minute = (msOfDay / 60_000) % 60
        let second = (msOfDay / 1000) % 60
        let ms = msOfDay % 1000
        let offsetMinutes = abs(offsetSeconds) / 60
        let zone =
            offsetSeconds == 0
            ? "Z" : "\(offsetSeconds < 0 ? "-" : "+")\(pad(offsetMinutes / 60, 2)):\(pad(offsetMinutes % 60, 2))"
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(hour, 2)):\(pad(minute, 2)):\(pad(second, 2)).\(pad(ms, 3))" + zone
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let s = String(value)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }
}
