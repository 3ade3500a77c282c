import CivilTime
import Foundation

/// Postman's times (`2026-11-21T20:00:00+08:00`, `…00.123+08:00`, `…00Z`, `…00+0800`): `CivilTime`'s
/// tolerant parser, shared with the libpq layer and the simulator, because Postman's examples mix
/// fractional and whole seconds and Foundation's formatters need one fixed option set per shape.
enum ISO8601 {
    static func parse(_ string: String) -> Date? { ISOTime.parse(string) }
}
