/// Finds the line of a key in a TOML document. TOMLKit reports positions only for syntax errors, so
/// a value that parses but is wrong (a misspelt key, a rate of 0) is located by reading the text:
/// table headers set the current path, and a `key = value` line under them is the key's line.
struct TOMLLocator {
    private var lines: [(path: [String], line: Int)] = []

    init(_ text: String) {
        var current: [String] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.drop { $0 == " " || $0 == "\t" }
            if line.hasPrefix("#") || line.isEmpty { continue }
            if line.hasPrefix("[") {
                let inner = line.drop { $0 == "[" }
                guard let close = inner.firstIndex(of: "]") else { continue }
                current = Self.dottedKey(inner[..<close])
                lines.append((current, index + 1))
                continue
            }
            guard let equals = Self.unquotedEquals(line) else { continue }
            lines.append((current + Self.dottedKey(line[..<equals]), index + 1))
        }
    }

    /// The first line that defines `path` (a table header or a key), or the closest enclosing table's line.
    func line(of path: [String]) -> Int? {
        var probe = path
        while !probe.isEmpty {
            if let hit = lines.first(where: { $0.path == probe }) { return hit.line }
            probe.removeLast()
        }
        return nil
    }

    /// Splits `a."b.c".d` into `["a", "b.c", "d"]`.
    static func dottedKey(_ text: Substring) -> [String] {
        var parts: [String] = []
        var current = ""
        var quote: Character?
        for ch in text {
            if let q = quote {
                if ch == q { quote = nil } else { current.append(ch) }
            } else if ch == "\"" || ch == "'" {
                quote = ch
            } else if ch == "." {
                parts.append(current.trimmingCharacters(in: " \t"))
                current = ""
            } else {
                current.append(ch)
            }
        }
        parts.append(current.trimmingCharacters(in: " \t"))
        return parts
    }

    private static func unquotedEquals(_ line: Substring) -> Substring.Index? {
        var quote: Character?
        for index in line.indices {
            let ch = line[index]
            if let q = quote {
                if ch == q { quote = nil }
            } else if ch == "\"" || ch == "'" {
                quote = ch
            } else if ch == "=" {
                return index
            }
        }
        return nil
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var result = Substring(self)
        while let first = result.first, set.contains(first) { result.removeFirst() }
        while let last = result.last, set.contains(last) { result.removeLast() }
        return String(result)
    }
}

/// Levenshtein distance, for "did you mean" on misspelt keys.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a)
    let b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    for i in 1...a.count {
        var current = [i] + Array(repeating: 0, count: b.count)
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return previous[b.count]
}

/// The closest of `candidates` to `key`, when it is close enough to be a likely typo.
func suggestion(for key: String, among candidates: [String]) -> String? {
    let scored = candidates.map { ($0, editDistance(key.lowercased(), $0)) }.min { $0.1 < $1.1 }
    guard let (best, distance) = scored, distance <= max(2, best.count / 3) else { return nil }
    return best
}
