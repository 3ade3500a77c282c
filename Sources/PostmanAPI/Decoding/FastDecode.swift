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
    /// array), nil when it must be decoded with `Decode` instead.
    static func page(_ data: Data) -> PostmanPage?? {
        data.withUnsafeBytes { raw -> PostmanPage?? in
            var reader = Reader(bytes: raw.bindMemory(to: UInt8.self))
            do {
                reader.skipSpace()
                guard reader.peek == UInt8(ascii: "{") else { return nil }
                let page = try reader.page()
                reader.skipSpace()
                guard reader.atEnd else { return nil }
                return .some(page)
            } catch {
                return nil
            }
        }
    }

    struct Unsure: Error {}

    struct Reader {
        let bytes: UnsafeBufferPointer<UInt8>
        var i = 0

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
            try expect(UInt8(ascii: "{"))
            skipSpace()
            if peek == UInt8(ascii: "}") {
                i += 1
                return
            }
            repeat {
                skipSpace()
                let key = try string()
                try expect(UInt8(ascii: ":"))
                skipSpace()
                try body(&self, key)
            } while try next(closing: UInt8(ascii: "}"))
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

        /// A string value, or nil for `null`; any other type: unsure.
        mutating func optionalString() throws -> String? {
            if isNull() { return nil }
            guard peek == UInt8(ascii: "\"") else { throw Unsure() }
            return try string()
        }

        mutating func string() throws -> String {
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw Unsure() }
            i += 1
            let start = i
            var ascii = true
            while i < bytes.count {
                let b = bytes[i]
                if b == UInt8(ascii: "\"") {
                    let text = UnsafeBufferPointer(rebasing: bytes[start..<i])
                    i += 1
                    if ascii { return String(decoding: text, as: UTF8.self) }
                    // Invalid UTF-8 makes JSONSerialization refuse the whole body: so unsure here.
                    guard let s = String(validating: text, as: UTF8.self) else { throw Unsure() }
                    return s
                }
                if b >= 0x80 { ascii = false }
                if b == UInt8(ascii: "\\") {
                    i = start
                    return try escapedString()
                }
                if b < 0x20 { throw Unsure() }
                i += 1
            }
            throw Unsure()
        }

        /// The slow path of `string()`: a string with escapes (the reader is just after its opening quote).
        private mutating func escapedString() throws -> String {
            var out: [UInt8] = []
            while i < bytes.count {
                let b = bytes[i]
                i += 1
                switch b {
                case UInt8(ascii: "\""):
                    guard let s = String(validating: out, as: UTF8.self) else { throw Unsure() }
                    return s
                case UInt8(ascii: "\\"):
                    guard i < bytes.count else { throw Unsure() }
                    let e = bytes[i]
                    i += 1
                    switch e {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4()
                        if (0xD800..<0xDC00).contains(scalar) {
                            // A surrogate pair, or unsure.
                            guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u")
                            else { throw Unsure() }
                            i += 2
                            let low = try hex4()
                            guard (0xDC00..<0xE000).contains(low) else { throw Unsure() }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else if (0xDC00..<0xE000).contains(scalar) {
                            throw Unsure()
                        }
                        guard let unicode = Unicode.Scalar(scalar) else { throw Unsure() }
                        out.append(contentsOf: Array(String(Character(unicode)).utf8))
                    default: throw Unsure()
                    }
                default:
                    if b < 0x20 { throw Unsure() }
                    out.append(b)
                }
            }
            throw Unsure()
        }

        private mutating func hex4() throws -> UInt32 {
            guard i + 4 <= bytes.count else { throw Unsure() }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let b = bytes[i]
                i += 1
                let digit: UInt32
                switch b {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(b - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(b - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(b - UInt8(ascii: "A") + 10)
                default: throw Unsure()
                }
                value = value << 4 | digit
            }
            return value
        }

        /// An integer literal (no fraction, no exponent), or nil for `null`; anything else: unsure.
        mutating func optionalInt() throws -> Int? {
            if isNull() { return nil }
            let start = i
            if peek == UInt8(ascii: "-") { i += 1 }
            let digits = i
            while i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) { i += 1 }
            guard i > digits, i - digits <= 18, bytes[digits] != UInt8(ascii: "0") || i - digits == 1 else { throw Unsure() }
            if let b = peek, b == UInt8(ascii: ".") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E") { throw Unsure() }
            guard let value = Int(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self))
            else { throw Unsure() }
            return value
        }

        /// `true` or `false`, or nil for `null`; anything else: unsure.
        mutating func optionalBool() throws -> Bool? {
            if isNull() { return nil }
            if i + 4 <= bytes.count, bytes[i] == UInt8(ascii: "t"), bytes[i + 1] == UInt8(ascii: "r"),
                bytes[i + 2] == UInt8(ascii: "u"), bytes[i + 3] == UInt8(ascii: "e")
            {
                i += 4
                return true
            }
            if i + 5 <= bytes.count, bytes[i] == UInt8(ascii: "f"), bytes[i + 1] == UInt8(ascii: "a"),
                bytes[i + 2] == UInt8(ascii: "l"), bytes[i + 3] == UInt8(ascii: "s"), bytes[i + 4] == UInt8(ascii: "e")
            {
                i += 5
                return false
            }
            throw Unsure()
        }

        /// Nesting of the values being skipped (a deep one is left to JSONSerialization).
        var depth = 0

        /// Skips any JSON value (checked against the grammar, not built).
        mutating func skipValue() throws {
            skipSpace()
            guard let b = peek else { throw Unsure() }
            switch b {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                guard depth <= 32 else { throw Unsure() }
                if b == UInt8(ascii: "{") {
                    try object { reader, _ in try reader.skipValue() }
                } else {
                    try array { reader in try reader.skipValue() }
                }
                depth -= 1
            case UInt8(ascii: "\""): try skipString()
            case UInt8(ascii: "t"), UInt8(ascii: "f"): _ = try optionalBool()
            case UInt8(ascii: "n"): guard isNull() else { throw Unsure() }
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try skipNumber()
            default: throw Unsure()
            }
        }

        /// A string not needed: scanned, and validated as UTF-8 only when it is not ASCII.
        private mutating func skipString() throws {
            let start = i
            i += 1
            var ascii = true
            while i < bytes.count {
                let b = bytes[i]
                if b == UInt8(ascii: "\"") {
                    i += 1
                    return
                }
                if b == UInt8(ascii: "\\") || b >= 0x80 || !ascii {
                    ascii = false
                    i = start
                    _ = try string()
                    return
                }
                if b < 0x20 { throw Unsure() }
                i += 1
            }
            throw Unsure()
        }

        /// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
        private mutating func skipNumber() throws {
            func digits(_ reader: inout Reader) -> Int {
                let start = reader.i
                while reader.i < reader.bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(reader.bytes[reader.i]) {
                    reader.i += 1
                }
                return reader.i - start
            }
            if peek == UInt8(ascii: "-") { i += 1 }
            if peek == UInt8(ascii: "0") {
                i += 1
            } else {
                guard digits(&self) > 0 else { throw Unsure() }
            }
            if peek == UInt8(ascii: ".") {
                i += 1
                guard digits(&self) > 0 else { throw Unsure() }
            }
            if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
                i += 1
                if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { i += 1 }
                guard digits(&self) > 0 else { throw Unsure() }
            }
        }

        /// True when the value here is an object (not consumed).
        var atObject: Bool { peek == UInt8(ascii: "{") }
        var atArray: Bool { peek == UInt8(ascii: "[") }

        /// `Decode.attempt`: an item that is not an object is dropped (nil).
        mutating func attempt() throws -> PostmanAttempt? {
            guard atObject else {
                try skipValue()
                return nil
            }
            var seen: UInt32 = 0
            var status: String?
            var createdAt: String?
            var errorType: String?
            var errorCode: String?
            var flatType: String?
            var flatCode: String?
            try object { reader, key in
                switch key {
                case "status", "createdAt", "error", "errorType", "errorCode":
                    try Self.once(&seen, key)
                default: break
                }
                switch key {
                case "status": status = try reader.optionalString()
                case "createdAt": createdAt = try reader.optionalString()
                case "errorType": flatType = try reader.optionalString()
                case "errorCode": flatCode = try reader.optionalString()
                case "error":
                    if reader.isNull() { return }
                    // `Decode` reads `error` only when it is an object; anything else: unsure.
                    guard reader.atObject else { throw Unsure() }
                    var inner: UInt32 = 0
                    try reader.object { reader, key in
                        switch key {
                        case "type":
                            try Self.once(&inner, key)
                            errorType = try reader.optionalString()
                        case "code":
                            try Self.once(&inner, key)
                            errorCode = try reader.optionalString()
                        default: try reader.skipValue()
                        }
                    }
                default: try reader.skipValue()
                }
            }
            return PostmanAttempt(
                status: status ?? "", createdAt: createdAt.flatMap(ISO8601.parse),
                errorType: errorType ?? Self.nonEmpty(flatType), errorCode: errorCode ?? Self.nonEmpty(flatCode))
        }

        /// The keys `Decode` reads, each a bit of a `seen` mask: a key that comes twice makes the reader unsure.
        private static let wantedKeys = [
            "id", "latestStatus", "campaignId", "recipient", "createdAt", "updatedAt", "attempts", "messageAttempts",
            "numAttempts", "batches", "status", "error", "errorType", "errorCode", "type", "code", "data", "pageData",
            "hasNextPage", "endCursor", "hasPreviousPage", "startCursor",
        ]

        private static func once(_ seen: inout UInt32, _ key: String) throws {
            guard let index = wantedKeys.firstIndex(of: key) else { throw Unsure() }
            let bit = UInt32(1) << UInt32(index)
            guard seen & bit == 0 else { throw Unsure() }
            seen |= bit
        }

        private static func nonEmpty(_ s: String?) -> String? {
            guard let s, !s.isEmpty else { return nil }
            return s
        }

        /// `Decode.message` for an object here: nil when it lacks `id` or `latestStatus` (skipped by a page).
        mutating func message() throws -> PostmanMessage? {
            var seen: UInt32 = 0
            var id: String?
            var latestStatus: String?
            var campaignId: String?
            var recipient: String?
            var createdAt: String?
            var updatedAt: String?
            var attempts: [PostmanAttempt]?
            var messageAttempts: [PostmanAttempt]?
            var numAttempts: Int?
            var batches: [PostmanBatchRef] = []
            try object { reader, key in
                switch key {
                case "id", "latestStatus", "campaignId", "recipient", "createdAt", "updatedAt", "attempts",
                    "messageAttempts", "numAttempts", "batches":
                    try Self.once(&seen, key)
                default: break
                }
                switch key {
                case "id": id = try reader.optionalString()
                case "latestStatus": latestStatus = try reader.optionalString()
                case "campaignId": campaignId = try reader.optionalString()
                case "recipient": recipient = try reader.optionalString()
                case "createdAt": createdAt = try reader.optionalString()
                case "updatedAt": updatedAt = try reader.optionalString()
                case "numAttempts": numAttempts = try reader.optionalInt()
                case "attempts", "messageAttempts":
                    if reader.isNull() { return }
                    guard reader.atArray else { throw Unsure() }
                    var list: [PostmanAttempt] = []
                    try reader.array { reader in
                        if let attempt = try reader.attempt() { list.append(attempt) }
                    }
                    if key == "attempts" { attempts = list } else { messageAttempts = list }
                case "batches":
                    if reader.isNull() { return }
                    guard reader.atArray else { throw Unsure() }
                    try reader.array { reader in
                        guard reader.atObject else {
                            try reader.skipValue()
                            return
                        }
                        var batchId: String?
                        var status: String?
                        var inner: UInt32 = 0
                        try reader.object { reader, key in
                            switch key {
                            case "id":
                                try Self.once(&inner, key)
                                batchId = try reader.optionalString()
                            case "status":
                                try Self.once(&inner, key)
                                status = try reader.optionalString()
                            default: try reader.skipValue()
                            }
                        }
                        if let batchId { batches.append(PostmanBatchRef(id: batchId, status: status)) }
                    }
                default: try reader.skipValue()
                }
            }
            guard let id, let latestStatus else { return nil }
            return PostmanMessage(
                id: id, campaignId: campaignId, recipient: recipient, latestStatus: latestStatus,
                createdAt: createdAt.flatMap(ISO8601.parse), updatedAt: updatedAt.flatMap(ISO8601.parse),
                attempts: attempts ?? messageAttempts, numAttempts: numAttempts, batches: batches)
        }

        /// `Decode.page` for the object here: nil when it has no `data` array.
        mutating func page() throws -> PostmanPage? {
            var seen: UInt32 = 0
            var messages: [PostmanMessage]?
            var skipped = 0
            var hasNextPage: Bool?
            var endCursor: String?
            var hasPreviousPage: Bool?
            var startCursor: String?
            try object { reader, key in
                switch key {
                case "data", "pageData":
                    try Self.once(&seen, key)
                default: break
                }
                switch key {
                case "data":
                    guard reader.atArray else { throw Unsure() }
                    var list: [PostmanMessage] = []
                    list.reserveCapacity(1000)
                    try reader.array { reader in
                        guard reader.atObject else {
                            try reader.skipValue()
                            skipped += 1
                            return
                        }
                        if let message = try reader.message() { list.append(message) } else { skipped += 1 }
                    }
                    messages = list
                case "pageData":
                    if reader.isNull() { return }
                    guard reader.atObject else { throw Unsure() }
                    var inner: UInt32 = 0
                    try reader.object { reader, key in
                        switch key {
                        case "hasNextPage", "endCursor", "hasPreviousPage", "startCursor":
                            try Self.once(&inner, key)
                        default: break
                        }
                        switch key {
                        case "hasNextPage": hasNextPage = try reader.optionalBool()
                        case "hasPreviousPage": hasPreviousPage = try reader.optionalBool()
                        case "endCursor": endCursor = try reader.optionalString()
                        case "startCursor": startCursor = try reader.optionalString()
                        default: try reader.skipValue()
                        }
                    }
                default: try reader.skipValue()
                }
            }
            guard let messages else { return nil }
            return PostmanPage(
                messages: messages, hasNextPage: hasNextPage ?? false, endCursor: endCursor,
                hasPreviousPage: hasPreviousPage ?? false, startCursor: startCursor, skippedItems: skipped)
        }
    }
}
