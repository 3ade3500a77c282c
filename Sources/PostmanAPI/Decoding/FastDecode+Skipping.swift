// Values the fast decoder does not need: checked against the JSON grammar, never built.
extension FastDecode.Reader {
    /// Skips any JSON value (checked against the grammar, not built).
    mutating func skipValue() throws {
        skipSpace()
        guard let b = peek else { throw Unsure() }
        switch b {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            depth += 1
            guard depth <= 32 else { throw Unsure() }
            if b == UInt8(ascii: "{") {
                try objectWithRawKeys { reader, _ in try reader.skipValue() }
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

    /// A string not needed: scanned, never built (issue 17: a sweep's page skips ~700 KB of strings, and
    /// Postman's `fullMessage` texts hold escapes such as `\n`, which used to send each one through the
    /// building path). Refused exactly where `string()` refuses: a control character, a bad escape, a lone
    /// surrogate, invalid UTF-8 (checked on the raw bytes, which holds iff it holds on the unescaped
    /// ones: escapes are ASCII and produce whole scalars).
    mutating func skipString() throws {
        guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw Unsure() }
        i += 1
        let start = i
        var ascii = true
        let base = UnsafeRawPointer(bytes.baseAddress!)
        while true {
            // Eight bytes at a time while none of them is a quote, a backslash or a control character
            // (the bit tricks of "Bit Twiddling Hacks": a byte equal to zero / less than n).
            let ones: UInt64 = 0x0101_0101_0101_0101
            let highs: UInt64 = 0x8080_8080_8080_8080
            while i + 8 <= bytes.count {
                let word = base.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                let quotes = word ^ (ones &* 0x22)
                let backslashes = word ^ (ones &* 0x5C)
                let stops =
                    ((quotes &- ones) & ~quotes | (backslashes &- ones) & ~backslashes | (word &- ones &* 0x20) & ~word) & highs
                if stops != 0 { break }
                if word & highs != 0 { ascii = false }
                i += 8
            }
            guard i < bytes.count else { throw Unsure() }
            let b = bytes[i]
            if b == UInt8(ascii: "\"") {
                if !ascii {
                    guard String(validating: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self) != nil
                    else { throw Unsure() }
                }
                i += 1
                return
            }
            if b == UInt8(ascii: "\\") {
                try skipEscape()
                continue
            }
            if b < 0x20 { throw Unsure() }
            if b >= 0x80 { ascii = false }
            i += 1
        }
    }

    /// One escape (the reader at its backslash), checked as `string()` checks it.
    private mutating func skipEscape() throws {
        guard i + 1 < bytes.count else { throw Unsure() }
        let e = bytes[i + 1]
        i += 2
        switch e {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
            UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            return
        case UInt8(ascii: "u"):
            let scalar = try hex4()
            if (0xD800..<0xDC00).contains(scalar) {
                guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u")
                else { throw Unsure() }
                i += 2
                guard (0xDC00..<0xE000).contains(try hex4()) else { throw Unsure() }
            } else if (0xDC00..<0xE000).contains(scalar) {
                throw Unsure()
            }
        default: throw Unsure()
        }
    }

    /// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
    private mutating func skipNumber() throws {
        func digits(_ reader: inout FastDecode.Reader) -> Int {
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
}
