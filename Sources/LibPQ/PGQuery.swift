import Foundation

/// A value that can be sent as a text-format query parameter.
public protocol PGEncodable: Sendable {
    /// The parameter in PostgreSQL's text input format.
    var pgText: String { get }
}

extension String: PGEncodable { public var pgText: String { self } }
extension Int: PGEncodable { public var pgText: String { String(self) } }
extension Int64: PGEncodable { public var pgText: String { String(self) } }
extension Int32: PGEncodable { public var pgText: String { String(self) } }
extension Bool: PGEncodable { public var pgText: String { self ? "t" : "f" } }
extension Double: PGEncodable { public var pgText: String { String(self) } }

/// One-dimensional arrays become PostgreSQL array literals; cast the parameter in SQL (`$1::text[]`).
/// Built byte by byte: `"` and `\` are ASCII and never part of a multi-byte UTF-8 sequence, so escaping
/// the bytes escapes the text (a thousand-id array per flush made the scalar-by-scalar version a tenth of
/// a run's CPU, issue 17). Inlinable so that callers get a version specialised for their element type.
extension Array: PGEncodable where Element: PGArrayElement {
    @inlinable
    public var pgText: String {
        var out: [UInt8] = []
        out.reserveCapacity(2 + count * 24)
        out.append(UInt8(ascii: "{"))
        for index in indices {
            if index > startIndex { out.append(UInt8(ascii: ",")) }
            guard let text = self[index].pgArrayText else {
                out.append(contentsOf: "NULL".utf8)
                continue
            }
            out.append(UInt8(ascii: "\""))
            for byte in text.utf8 {
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { out.append(UInt8(ascii: "\\")) }
                out.append(byte)
            }
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }
}

/// An element of an array parameter; `nil` text is SQL NULL.
public protocol PGArrayElement: Sendable { var pgArrayText: String? { get } }
extension String: PGArrayElement { public var pgArrayText: String? { self } }
extension Int: PGArrayElement { public var pgArrayText: String? { String(self) } }
extension Int64: PGArrayElement { public var pgArrayText: String? { String(self) } }
extension Bool: PGArrayElement { public var pgArrayText: String? { self ? "t" : "f" } }
extension Optional: PGArrayElement where Wrapped: PGArrayElement {
    public var pgArrayText: String? { self?.pgArrayText }
}

/// SQL text plus its parameters. Built only by string interpolation, where every interpolated value
/// becomes a `$n` parameter and identifiers are escaped by libpq at execution time; raw SQL needs the
/// explicit `PGQuery(unsafeSQL:)` or `\(unescaped:)` spelling.
public struct PGQuery: Sendable, ExpressibleByStringInterpolation, CustomStringConvertible {
    enum Segment: Sendable {
        case text(String)
        case identifier(String)
        case parameter(Int)
    }

    var segments: [Segment] = []
    /// Parameter values in text format; `nil` is SQL NULL.
    public private(set) var parameters: [String?] = []

    public init(unsafeSQL sql: String) { segments = [.text(sql)] }

    public init(stringLiteral value: String) { segments = [.text(value)] }

    public init(stringInterpolation: StringInterpolation) {
        segments = stringInterpolation.segments
        parameters = stringInterpolation.parameters
    }

    /// The SQL with `$n` placeholders and identifiers shown quoted in the simple way (for logs only).
    public var description: String { render { "\"" + $0.replacingOccurrences(of: "\"", with: "\"\"") + "\"" } }

    func render(identifier escape: (String) throws -> String) rethrows -> String {
        var sql = ""
        for segment in segments {
            switch segment {
            case .text(let text): sql += text
            case .identifier(let name): sql += try escape(name)
            case .parameter(let index): sql += "$\(index + 1)"
            }
        }
        return sql
    }

    /// Appends another query, renumbering its parameters.
    public mutating func append(_ other: PGQuery) {
        let offset = parameters.count
        for segment in other.segments {
            if case .parameter(let index) = segment {
                segments.append(.parameter(index + offset))
            } else {
                segments.append(segment)
            }
        }
        parameters.append(contentsOf: other.parameters)
    }

    public struct StringInterpolation: StringInterpolationProtocol {
        var segments: [Segment] = []
        var parameters: [String?] = []

        public init(literalCapacity: Int, interpolationCount: Int) {}

        public mutating func appendLiteral(_ literal: String) { segments.append(.text(literal)) }

        /// A value: becomes `$n`.
        public mutating func appendInterpolation(_ value: some PGEncodable) {
            parameters.append(value.pgText)
            segments.append(.parameter(parameters.count - 1))
        }

        /// An optional value: `nil` is sent as SQL NULL.
        public mutating func appendInterpolation(_ value: (some PGEncodable)?) {
            parameters.append(value?.pgText)
            segments.append(.parameter(parameters.count - 1))
        }

        /// A table, schema or column name: quoted with `PQescapeIdentifier`.
        public mutating func appendInterpolation(identifier name: String) { segments.append(.identifier(name)) }

        /// A schema-qualified name (`schema.table`), each part quoted on its own.
        public mutating func appendInterpolation(qualified parts: [String]) {
            for (index, part) in parts.enumerated() {
                if index > 0 { segments.append(.text(".")) }
                segments.append(.identifier(part))
            }
        }

        /// A fragment built elsewhere with the same rules.
        public mutating func appendInterpolation(fragment: PGQuery) {
            let offset = parameters.count
            for segment in fragment.segments {
                if case .parameter(let index) = segment {
                    segments.append(.parameter(index + offset))
                } else {
                    segments.append(segment)
                }
            }
            parameters.append(contentsOf: fragment.parameters)
        }

        /// Raw SQL text from the program itself (never from input).
        public mutating func appendInterpolation(unescaped text: String) { segments.append(.text(text)) }
    }
}
