import Foundation

/// A direct decoder of Postman's message objects and list pages, for the job's hot path (issue 17): it
/// reads the bytes once and builds `PostmanMessage`s without the `NSDictionary`/`NSArray` tree of
/// `JSONSerialization` (which, with the casts back and its deallocation, was most of the job's CPU on
/// list pages of 1,000 messages). Values it does not need are skipped without being built.
///
/// It only answers when the body is plain, well-typed JSON: strings where `Decode` reads strings, an
/// integer literal for `numAttempts`, `true`/`false` for the page flags, `null` for absent. Anything else
/// (a number where a string is expected, a duplicate key, a body that is not JSON at all, …) makes it
/// give up (`nil`), and the caller decodes the body with the tolerant `Decode` instead, so the result is
/// always what `Decode` would have made of it.
enum FastDecode {
    /// A message object, or nil: decode with `Decode` instead.
    static func message(_ data: Data) -> PostmanMessage?? {
        data.withUnsafeBytes { raw -> PostmanMessage?? in
            var reader = Reader(bytes: raw.bindMemory(to: UInt8.self))
            do {
                reader.skipSpace()
                guard reader.peek == UInt8(ascii: "{") else { return nil }
                let message = try reader.message()
                reader.skipSpace()
                guard reader.atEnd else { return nil }
                return .some(message)
            } catch {
                return nil
            }
        }
    }

    /// A page of a list endpoint: `.some(nil)` when the body is plain JSON but not a page (no `data`
    /// array), nil when it must be decoded with `Decode` instead. With `wanted`, the items it says no to
    /// give only their id (`PostmanPage.otherIds`).
    static func page(_ data: Data, fullyDecoding wanted: ((String) -> Bool)? = nil) -> PostmanPage?? {
        data.withUnsafeBytes { raw -> PostmanPage?? in
            var reader = Reader(bytes: raw.bindMemory(to: UInt8.self))
            do {
                reader.skipSpace()
                guard reader.peek == UInt8(ascii: "{") else { return nil }
                let page = try reader.page(wanted: wanted)
                reader.skipSpace()
                guard reader.atEnd else { return nil }
                return .some(page)
            } catch {
                return nil
            }
        }
    }

    struct Unsure: Error {}

    /// A cursor over the body: the structure (objects, arrays, `null`) here; the values in
    /// FastDecode+Values.swift, skipping in FastDecode+Skipping.swift, Postman's shapes in FastDecode+Postman.swift.
    struct Reader {
        // The extensions in other files see Reader's members but not FastDecode's.
        typealias Unsure = FastDecode.Unsure

        let bytes: UnsafeBufferPointer<UInt8>
        var i = 0
        /// Nesting of the values being skipped (a deep one is left to JSONSerialization).
        var depth = 0

        var atEnd: Bool { i >= bytes.count }
        var peek: UInt8? { i < bytes.count ? bytes[i] : nil }

        mutating func skipSpace() {
            while i < bytes.count {
                switch bytes[i] {
                case 0x20, 0x09, 0x0A, 0x0D: i += 1
                default: return
                }
            }
        }

        mutating func expect(_ byte: UInt8) throws {
            skipSpace()
            guard i < bytes.count, bytes[i] == byte else { throw Unsure() }
            i += 1
        }

        /// After a value inside `{…}` or `[…]`: true when another member follows, false at the end.
        mutating func next(closing: UInt8) throws -> Bool {
            skipSpace()
            guard i < bytes.count else { throw Unsure() }
            if bytes[i] == UInt8(ascii: ",") {
                i += 1
                return true
            }
            if bytes[i] == closing {
                i += 1
                return false
            }
            throw Unsure()
        }

        /// Iterates the members of an object (the reader is at its `{`), calling `body` with each key and
        /// the reader at the member's value; `body` must consume the value.
        mutating func object(_ body: (inout Reader, String) throws -> Void) throws {
            try members(key: { try $0.string() }, body)
        }

        /// `object` for members whose keys are only compared, never kept: each key is its bytes, no `String`
        /// built (a sweep's page has some 25,000 keys). A key with an escape is left to the tolerant
        /// decoder (unsure); Postman writes none.
        mutating func objectWithRawKeys(_ body: (inout Reader, UnsafeBufferPointer<UInt8>) throws -> Void) throws {
            try members(key: { try $0.rawKey() }, body)
        }

        private mutating func members<Key>(
            key readKey: (inout Reader) throws -> Key, _ body: (inout Reader, Key) throws -> Void
        ) throws {
            try expect(UInt8(ascii: "{"))
            skipSpace()
            if peek == UInt8(ascii: "}") {
                i += 1
                return
            }
            repeat {
                skipSpace()
                let key = try readKey(&self)
                try expect(UInt8(ascii: ":"))
                skipSpace()
                try body(&self, key)
            } while try next(closing: UInt8(ascii: "}"))
        }

        /// A key's bytes between its quotes (checked as `string()` checks a string without escapes).
        mutating func rawKey() throws -> UnsafeBufferPointer<UInt8> {
            guard let (key, ascii) = try plainString() else { throw Unsure() }
            if !ascii, String(validating: key, as: UTF8.self) == nil { throw Unsure() }
            return key
        }

        /// Whether a raw key is `name` (ASCII).
        static func key(_ key: UnsafeBufferPointer<UInt8>, is name: StaticString) -> Bool {
            key.count == name.utf8CodeUnitCount && memcmp(key.baseAddress!, name.utf8Start, key.count) == 0
        }

        /// Iterates the items of an array (the reader is at its `[`).
        mutating func array(_ body: (inout Reader) throws -> Void) throws {
            try expect(UInt8(ascii: "["))
            skipSpace()
            if peek == UInt8(ascii: "]") {
                i += 1
                return
            }
            repeat {
                skipSpace()
                try body(&self)
            } while try next(closing: UInt8(ascii: "]"))
        }

        mutating func isNull() -> Bool {
            guard i + 4 <= bytes.count, bytes[i] == UInt8(ascii: "n"), bytes[i + 1] == UInt8(ascii: "u"),
                bytes[i + 2] == UInt8(ascii: "l"), bytes[i + 3] == UInt8(ascii: "l")
            else { return false }
            i += 4
            return true
        }

        /// True when the value here is an object (not consumed).
        var atObject: Bool { peek == UInt8(ascii: "{") }
        var atArray: Bool { peek == UInt8(ascii: "[") }
    }
}
