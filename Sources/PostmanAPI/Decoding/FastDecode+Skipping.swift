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
