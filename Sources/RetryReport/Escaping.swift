import Foundation
import Mustache

/// Text from the data (ids, codes, Postman's messages) is shown as text, never as markup or layout.
enum Sanitize {
    /// Bidi embedding/override/isolate controls could reorder what a reader sees ("Trojan Source");
    /// they are replaced by U+FFFD. Right-to-left letters stay as they are (HTML isolates them).
    /// Other control characters, line breaks included, become spaces so a value stays on its line.
    static func text(_ value: String) -> String {
        // Printable ASCII, nearly every value, has nothing to replace (a report lists thousands of them).
        if value.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) { return value }
        var out = String.UnicodeScalarView()
        for scalar in value.unicodeScalars {
            switch scalar.value {
            case 0x202A...0x202E, 0x2066...0x2069, 0x200E, 0x200F, 0x061C: out.append("\u{FFFD}")
            case 0x00...0x1F, 0x7F...0x9F, 0x2028, 0x2029: out.append(" ")
            default: out.append(scalar)
            }
        }
        return String(out)
    }
}

/// Markdown escaping for summary.md: a backslash before each character that Markdown (CommonMark,
/// GitHub, chat dialects) reads as syntax in the middle of a line, so `<script>` stays text and a `|`
/// cannot break a table. Values never start a line in the template, so line-start syntax (`#`, `-`,
/// `+`) needs nothing, and `(`/`)` mean nothing without the `[`/`]` that are escaped. An underscore
/// inside a word is never emphasis and stays as it is (`retry_limit` reads as written in chat).
struct MarkdownContentType: MustacheContentType {
    static let special: Set<Character> = ["\\", "`", "*", "[", "]", "<", ">", "|", "~", "&"]

    func escapeText(_ text: String) -> String {
        let characters = Array(Sanitize.text(text))
        var out = ""
        for (index, ch) in characters.enumerated() {
            if Self.special.contains(ch) {
                out.append("\\")
            } else if ch == "_" {
                let before = index > 0 && (characters[index - 1].isLetter || characters[index - 1].isNumber)
                let after = index + 1 < characters.count && (characters[index + 1].isLetter || characters[index + 1].isNumber)
                if !(before && after) { out.append("\\") }
            }
            out.append(ch)
        }
        return out
    }

    static let registered: Bool = {
        MustacheContentTypes.register(MarkdownContentType(), named: "MARKDOWN")
        return true
    }()
}

/// RFC 4180 fields, with a guard against formula injection: a cell that a spreadsheet would run
/// as a formula (starting with = + - @, or a tab or carriage return) is prefixed with a single quote.
enum CSV {
    static func field(_ value: String) -> String {
        var text = Sanitize.text(value)
        if let first = text.unicodeScalars.first, ["=", "+", "-", "@", "\t", "\r"].contains(first) {
            text = "'" + text
        }
        let special: [UInt8] = [UInt8(ascii: ","), UInt8(ascii: "\""), UInt8(ascii: "\n"), UInt8(ascii: "\r")]
        guard text.utf8.contains(where: special.contains) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// One record, CRLF-terminated as RFC 4180 asks.
    static func record(_ fields: [String]) -> String { fields.map(field).joined(separator: ",") + "\r\n" }
}
