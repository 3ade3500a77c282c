/// The report's view as nested dictionaries and arrays, built with one `Mirror` per value.
///
/// Mustache looks a struct's fields up with a new `Mirror` for every tag, and a tag that is not on the
/// innermost object reflects every object of the context stack again; at a hundred campaigns that was 7%
/// of a whole run's CPU (issue 17, docs/benchmarks.md). Dictionaries are `MustacheParent`s: each tag is
/// then a hash look-up. The rendered text is the same: a nil field is left out, and a missing key sends
/// the look-up down the stack just as a nil field does.
enum MustacheTree {
    static func make(_ value: Any) -> Any {
        let mirror = Mirror(reflecting: value)
        switch mirror.displayStyle {
        case .struct, .class:
            var fields: [String: Any] = [:]
            for child in mirror.children {
                guard let label = child.label, let field = unwrap(child.value) else { continue }
                fields[label] = make(field)
            }
            return fields
        case .collection:
            return mirror.children.compactMap { unwrap($0.value).map(make) }
        default:
            return value
        }
    }

    /// The value an optional holds, or nil; any other value as it is.
    private static func unwrap(_ value: Any) -> Any? {
        let mirror = Mirror(reflecting: value)
        guard mirror.displayStyle == .optional else { return value }
        return mirror.children.first.flatMap { unwrap($0.value) }
    }
}
