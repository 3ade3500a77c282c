import Foundation
import Logging

/// One JSON object per line on stderr, for schedulers and log shippers (used when stderr is not a
/// terminal). Metadata becomes fields; nothing here ever sees an API key (the job never logs one).
struct JSONLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level
    let label: String

    init(label: String, level: Logger.Level) {
        self.label = label
        self.logLevel = level
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    static let ownFields: Set<String> = ["time", "level", "message", "logger"]

    func log(event: LogEvent) {
        var fields: [String: String] = [:]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) {
            // A metadata key that is one of the line's own fields is kept beside it, not overwritten by it.
            fields[Self.ownFields.contains(key) ? "meta_" + key : key] = "\(value)"
        }
        fields["time"] = ISO8601DateFormatter().string(from: Date())
        fields["level"] = event.level.rawValue
        fields["message"] = event.message.description
        fields["logger"] = label
        if let error = event.error { fields["error"] = "\(error)" }
        guard let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]) else { return }
        FileHandle.standardError.write(data + Data("\n".utf8))
    }
}
