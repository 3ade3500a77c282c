import Foundation

/// The rows of one result, copied out of libpq into Swift values (the `PGresult` is freed at once).
public struct PGRows: Sendable, Sequence {
    public let columns: [String]
    /// Column type OIDs, as `PQftype` reported them.
    public let columnTypes: [UInt32]
    let cells: [[String?]]
    /// Rows affected, from `PQcmdTuples` (0 when the command reports none).
    public let affectedRows: Int

    public var count: Int { cells.count }
    public var isEmpty: Bool { cells.isEmpty }
    public var first: PGRow? { cells.isEmpty ? nil : self[0] }

    public subscript(index: Int) -> PGRow { PGRow(rows: self, index: index) }

    public func makeIterator() -> AnyIterator<PGRow> {
        var index = 0
        return AnyIterator {
            guard index < cells.count else { return nil }
            defer { index += 1 }
            return self[index]
        }
    }

    func columnIndex(_ name: String) -> Int? { columns.firstIndex(of: name) }
}

/// One row; values decode by column name with errors that name the column and the wanted type.
public struct PGRow: Sendable {
    let rows: PGRows
    let index: Int

    /// The raw text of a column, or nil for SQL NULL.
    public func raw(_ column: String) throws -> String? {
        guard let position = rows.columnIndex(column) else {
            throw PGError(.decoding, "no column \"\(column)\" in result (columns: \(rows.columns.joined(separator: ", ")))")
        }
        return rows.cells[index][position]
    }

    /// A non-NULL value.
    public func decode<T: PGDecodable>(_ column: String, as type: T.Type = T.self) throws -> T {
        guard let text = try raw(column) else {
            throw PGError(.decoding, "column \"\(column)\" is NULL, expected \(T.self)")
        }
        guard let value = T(pgText: text) else {
            throw PGError(.decoding, "column \"\(column)\" holds a value that is not a valid \(T.self)")
        }
        return value
    }

    /// A value that may be NULL.
    public func optional<T: PGDecodable>(_ column: String, as type: T.Type = T.self) throws -> T? {
        guard let text = try raw(column) else { return nil }
        guard let value = T(pgText: text) else {
            throw PGError(.decoding, "column \"\(column)\" holds a value that is not a valid \(T.self)")
        }
        return value
    }
}

/// A Swift type that can be read from PostgreSQL's text output format.
public protocol PGDecodable: Sendable {
    init?(pgText text: String)
}

extension String: PGDecodable { public init?(pgText text: String) { self = text } }
extension Int: PGDecodable { public init?(pgText text: String) { self.init(text) } }
extension Int64: PGDecodable { public init?(pgText text: String) { self.init(text) } }
extension Int32: PGDecodable { public init?(pgText text: String) { self.init(text) } }
extension Double: PGDecodable { public init?(pgText text: String) { self.init(text) } }
extension Bool: PGDecodable {
    public init?(pgText text: String) {
        switch text {
        case "t", "true": self = true
        case "f", "false": self = false
        default: return nil
        }
    }
}

/// `timestamptz` in ISO style; the connection sets `TimeZone=UTC` and `DateStyle=ISO`, but any offset is read.
extension Date: PGDecodable {
    public init?(pgText text: String) {
        guard let date = PGTimestamp.parse(text) else { return nil }
        self = date
    }
}

extension Date: PGEncodable {
    /// ISO 8601 with microseconds and an explicit UTC offset.
    public var pgText: String { PGTimestamp.format(self) }
}

/// Text arrays (`text[]`, `varchar[]`) in PostgreSQL's array output format; NULL elements become nil.
extension Array: PGDecodable where Element == String? {
    public init?(pgText text: String) {
        guard let parsed = PGArrayParser.parse(text) else { return nil }
        self = parsed
    }
}

enum PGArrayParser {
    static func parse(_ text: String) -> [String?]? {
        let scalars = Array(text.unicodeScalars)
        guard scalars.first == "{", scalars.last == "}" else { return nil }
        var result: [String?] = []
        var i = 1
        let end = scalars.count - 1
        if end == 1 { return [] }
        while i < end {
            if scalars[i] == "\"" {
                var value = String.UnicodeScalarView()
                i += 1
                while i < end, scalars[i] != "\"" {
                    if scalars[i] == "\\" { i += 1 }
                    guard i < end else { return nil }
                    value.append(scalars[i])
                    i += 1
                }
                i += 1  // closing quote
                result.append(String(value))
            } else {
                var value = String.UnicodeScalarView()
                while i < end, scalars[i] != "," {
                    value.append(scalars[i])
                    i += 1
                }
                let string = String(value)
                result.append(string == "NULL" ? nil : string)
            }
            if i < end, scalars[i] == "," { i += 1 }
        }
        return result
    }
}

/// Fast, allocation-light timestamp conversion (no DateFormatter on the hot path).
public enum PGTimestamp {
    /// Parses `2026-11-25 18:00:00.123456+00`, `…+08:00`, `…T…Z` and the like.
    public static func parse(_ text: String) -> Date? {
        let u = Array(text.utf8)
        func number(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= u.count else { return nil }
            var value = 0
            for k in from..<(from + count) {
                let d = Int(u[k]) - 48
                guard d >= 0, d <= 9 else { return nil }
                value = value * 10 + d
            }
            return value
        }
        guard u.count >= 19, let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
            let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2)
        else { return nil }
        var i = 19
        var fraction = 0.0
        if i < u.count, u[i] == UInt8(ascii: ".") {
            i += 1
            var scale = 0.1
            while i < u.count, u[i] >= 48, u[i] <= 57 {
                fraction += Double(u[i] - 48) * scale
                scale /= 10
                i += 1
            }
        }
        var offsetSeconds = 0
        if i < u.count {
            let sign = u[i]
            if sign == UInt8(ascii: "Z") {
                offsetSeconds = 0
            } else if sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") {
                guard let oh = number(i + 1, 2) else { return nil }
                var om = 0
                var j = i + 3
                if j < u.count, u[j] == UInt8(ascii: ":") { j += 1 }
                if let m = number(j, 2) { om = m }
                offsetSeconds = (oh * 3600 + om * 60) * (sign == UInt8(ascii: "-") ? -1 : 1)
            } else {
                return nil
            }
        }
        let days = daysFromCivil(year: year, month: month, day: day)
        let unix = Double(days * 86400 + hour * 3600 + minute * 60 + second - offsetSeconds) + fraction
        return Date(timeIntervalSince1970: unix)
    }

    public static func format(_ date: Date) -> String {
        let total = date.timeIntervalSince1970
        var seconds = Int(total.rounded(.down))
        var micros = Int(((total - Double(seconds)) * 1_000_000).rounded())
        if micros >= 1_000_000 {
            seconds += 1
            micros -= 1_000_000
        }
        let days = Int((Double(seconds) / 86400).rounded(.down))
        let secondsOfDay = seconds - days * 86400
        let (y, m, d) = civilFromDays(days)
        func pad(_ v: Int, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secondsOfDay / 3600, 2)):\(pad(secondsOfDay / 60 % 60, 2)):"
            + "\(pad(secondsOfDay % 60, 2)).\(pad(micros, 6))Z"
    }

    // Howard Hinnant's civil-date algorithms.
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    static func civilFromDays(_ z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}

extension Date: PGArrayElement {
    public var pgArrayText: String? { PGTimestamp.format(self) }
}
