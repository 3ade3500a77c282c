import Foundation

/// Local times of day between which no retry is sent (citizens should not get an SMS at 3 a.m.).
/// `start` is inclusive, `end` exclusive; a window whose end is before its start wraps past
/// midnight (22:00 to 07:00). Polling is not restricted: reading a message sends nothing to anyone.
public struct QuietHours: Sendable, Equatable, CustomStringConvertible {
    /// Minutes after local midnight.
    public var start: Int
    public var end: Int
    public var timeZone: TimeZone

    public static let defaultTimeZone = "Asia/Singapore"

    public init(start: Int, end: Int, timeZone: TimeZone) {
        self.start = start
        self.end = end
        self.timeZone = timeZone
    }

    /// Parses `HH:MM` (24-hour clock) into minutes after midnight.
    public static func parseTimeOfDay(_ text: String) -> Int? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 2, parts[1].count == 2,
            let hours = Int(parts[0]), let minutes = Int(parts[1]), (0...23).contains(hours), (0...59).contains(minutes)
        else { return nil }
        return hours * 60 + minutes
    }

    /// True when `date`, read as a local time in `timeZone`, falls inside the window.
    public func contains(_ date: Date) -> Bool {
        guard start != end else { return false }  // an empty window: never quiet
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let parts = calendar.dateComponents([.hour, .minute], from: date)
        let minute = (parts.hour ?? 0) * 60 + (parts.minute ?? 0)
        if start < end { return minute >= start && minute < end }
        return minute >= start || minute < end
    }

    public var description: String {
        func clock(_ minutes: Int) -> String { String(format: "%02d:%02d", minutes / 60, minutes % 60) }
        return "\(clock(start))-\(clock(end)) \(timeZone.identifier)"
    }
}
