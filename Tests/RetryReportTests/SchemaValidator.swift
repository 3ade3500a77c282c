import Foundation

/// Just enough JSON Schema (2020-12) to check summary.json against docs/summary.schema.json:
/// type (or a list of types), required, properties, additionalProperties (false or a schema),
/// items, enum, minimum, propertyNames and local `$ref`s to `#/$defs/…`. Returns what does not match.
struct SchemaValidator {
    let root: [String: Any]

    func validate(_ value: Any, against schema: [String: Any]? = nil, at path: String = "$") -> [String] {
        var schema = schema ?? root
        if let ref = schema["$ref"] as? String {
            let name = ref.replacingOccurrences(of: "#/$defs/", with: "")
            guard let target = (root["$defs"] as? [String: Any])?[name] as? [String: Any] else {
                return ["\(path): bad $ref \(ref)"]
            }
            schema = target.merging(schema.filter { $0.key != "$ref" }) { a, _ in a }
        }
        var problems: [String] = []
        if let types = (schema["type"] as? [String]) ?? (schema["type"] as? String).map({ [$0] }) {
            guard types.contains(where: { Self.matches(value, type: $0) }) else { return ["\(path): not \(types)"] }
        }
        if let options = schema["enum"] as? [Any], !options.contains(where: { "\($0)" == "\(value)" }) {
            problems.append("\(path): \(value) not in \(options)")
        }
        if let minimum = schema["minimum"] as? Double, let number = value as? NSNumber, !(value is NSNull) {
            if number.doubleValue < minimum { problems.append("\(path): \(number) < \(minimum)") }
        }
        if let object = value as? [String: Any] {
            for key in schema["required"] as? [String] ?? [] where object[key] == nil {
                problems.append("\(path): missing \(key)")
            }
            let properties = schema["properties"] as? [String: Any] ?? [:]
            for (key, child) in object {
                if let names = schema["propertyNames"] as? [String: Any] {
                    problems += validate(key, against: names, at: "\(path).\(key)(name)")
                }
                if let sub = properties[key] as? [String: Any] {
                    problems += validate(child, against: sub, at: "\(path).\(key)")
                } else if let extra = schema["additionalProperties"] as? [String: Any] {
                    problems += validate(child, against: extra, at: "\(path).\(key)")
                } else if schema["additionalProperties"] as? Bool == false {
                    problems.append("\(path): unexpected key \(key)")
                }
            }
        }
        if let array = value as? [Any], let items = schema["items"] as? [String: Any] {
            for (index, element) in array.enumerated() { problems += validate(element, against: items, at: "\(path)[\(index)]") }
        }
        return problems
    }

    static func matches(_ value: Any, type: String) -> Bool {
        switch type {
        case "null": return value is NSNull
        case "object": return value is [String: Any]
        case "array": return value is [Any]
        case "string": return value is String
        case "integer":
            guard let number = value as? NSNumber else { return false }
            return number.doubleValue == number.doubleValue.rounded()
        case "number": return value is NSNumber && !(value is NSNull)
        default: return false
        }
    }
}
