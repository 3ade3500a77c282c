import CivilTime
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

/// Timestamp text as PostgreSQL writes and reads it (no DateFormatter on the hot path). The parser
/// and the writer are `CivilTime`'s, shared with the Postman client and the simulator.
public enum PGTimestamp {
    /// Parses `2026-11-25 18:00:00.123456+00`, `…+08:00`, `…T…Z` and the like (`ISOTimestamp.parse`).
    public static func parse(_ text: String) -> Date? { ISOTime.parse(text) }

    /// `2026-11-25T18:00:00.123456Z`: UTC with microseconds, PostgreSQL's own resolution.
    public static func format(_ date: Date) -> String { ISOTime.formatUTC(date) }
}

extension Date: PGArrayElement {
    public var pgArrayText: String? { PGTimestamp.format(self) }
}
