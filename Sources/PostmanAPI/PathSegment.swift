/// Percent-encoding for ids placed in a URL.
///
/// Every byte of the UTF-8 form except the RFC 3986 unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`) is written as `%XX`, so an id such as `a/b`, `?x` or `%`
/// stays one path segment and can never address another message or endpoint.
/// (`.` and `..` alone cannot be kept in one segment by any encoding; callers reject those.)
public enum PathSegment {
    public static func encode(_ s: String) -> String {
        var out = [UInt8]()
        out.reserveCapacity(s.utf8.count)
        for byte in s.utf8 {
            if isUnreserved(byte) {
                out.append(byte)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func isUnreserved(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789ABCDEF".utf8)
}
