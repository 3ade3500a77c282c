/// The report's view as nested dictionaries and arrays, built with one `Mirror` per struct and array.
///
/// Mustache looks a struct's fields up with a new `Mirror` for every tag, and a tag that is not on the
/// innermost object reflects every object of the context stack again; at a hundred campaigns that was 7%
/// of a whole run's CPU (issue 17, docs/benchmarks.md). Dictionaries are `MustacheParent`s: each tag is
/// then a hash look-up. The rendered text is the same: a nil field is left out, and a missing key sends
/// the look-up down the stack just as a nil field does.
enum MustacheTree {
    static func make(_ value: Any) -> Any {
        // The view's leaves (thousands at a hundred campaigns: every tick of every chart) are passed
        // as they are, without a Mirror each (a quarter of writing the report, docs/benchmarks.md).
        if value is String || value is Int || value is Bool || value is Double { return value }
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

    /// The value an optional holds (however deeply nested), or nil; any other value as it is.
    private static func unwrap(_ value: Any) -> Any? {
        guard let optional = value as? any OptionalValue else { return value }
        return optional.wrappedValue.flatMap(unwrap)
    }
}

/// Lets `MustacheTree` see through an optional field with a cast instead of a `Mirror`.
private protocol OptionalValue { var wrappedValue: Any? { get } }
extension Optional: OptionalValue {
    fileprivate var wrappedValue: Any? { map { $0 as Any } }
}
