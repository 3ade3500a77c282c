// The scalar values the fast decoder builds: strings (with their escapes), integers and booleans.
extension FastDecode.Reader {
    /// A string value, or nil for `null`; any other type: unsure.
    mutating func optionalString() throws -> String? {
        if isNull() { return nil }
        guard peek == UInt8(ascii: "\"") else { throw Unsure() }
        return try string()
    }

    mutating func string() throws -> String {
        guard let (text, ascii) = try plainString() else { return try escapedString() }
        if ascii { return String(decoding: text, as: UTF8.self) }
        // Invalid UTF-8 makes JSONSerialization refuse the whole body: so unsure here.
        guard let s = String(validating: text, as: UTF8.self) else { throw Unsure() }
        return s
    }

    /// A string up to its closing quote, the reader after it: its bytes, and whether all are ASCII. Nil at
    /// the first backslash, with the reader just after the opening quote (`string()` then builds it with
    /// its escapes; a key is refused). A control character: unsure.
    mutating func plainString() throws -> (text: UnsafeBufferPointer<UInt8>, ascii: Bool)? {
        guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw Unsure() }
        i += 1
        let start = i
        var ascii = true
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "\"") {
                let text = UnsafeBufferPointer(rebasing: bytes[start..<i])
                i += 1
                return (text, ascii)
            }
            if b == UInt8(ascii: "\\") {
                i = start
                return nil
            }
            if b < 0x20 { throw Unsure() }
            if b >= 0x80 { ascii = false }
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

    mutating func hex4() throws -> UInt32 {
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
}
