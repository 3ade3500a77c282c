import CivilTime
import Foundation
import Testing

@Suite struct ISOTimeTests {
    /// 2026-11-21T12:00:00Z
    let reference = Date(timeIntervalSince1970: 1_795_262_400)

    @Test func shapesPostmanAndPostgreSQLWrite() {
        for text in [
            "2026-11-21T20:00:00+08:00", "2026-11-21T12:00:00Z", "2026-11-21T12:00:00z", "2026-11-21 12:00:00+00",
            "2026-11-21t20:00:00+0800", "2026-11-21T20:00:00+08", "2026-11-21T04:00:00-08:00", "2026-11-21T20:00+08:00",
            "2026-11-21 12:00:00"  // PostgreSQL's timestamp without time zone: UTC
        ] {
            #expect(ISOTime.parse(text) == reference, "\(text)")
        }
    }

    @Test func fractionalSeconds() {
        #expect(ISOTime.parse("2026-11-21T20:00:00.5+08:00") == reference.addingTimeInterval(0.5))
        #expect(ISOTime.parse("2026-11-21T20:00:00,5+08:00") == reference.addingTimeInterval(0.5))
        #expect(ISOTime.parse("2026-11-21T20:00:00.500+0800") == reference.addingTimeInterval(0.5))
        let micro = ISOTimestamp.parse("2026-11-21 12:00:00.123456+00")
        #expect(micro?.fractionMilliseconds == 123)
        #expect(abs((micro?.fraction ?? 0) - 0.123456) < 1e-12)
        // Milliseconds are truncated, never rounded up into the next second.
        #expect(ISOTime.parseMilliseconds("2026-11-21T12:00:00.9999Z") == 1_795_262_400_999)
        #expect(ISOTime.parseMilliseconds("2026-11-21T12:00:00.1Z") == 1_795_262_400_100)
        #expect(ISOTime.parse("2026-11-21T12:00:00.Z") == nil)
    }

    @Test func offsets() {
        #expect(ISOTimestamp.parse("2026-11-21T12:00:00-09:30")?.offsetSeconds == -(9 * 3600 + 30 * 60))
        #expect(ISOTimestamp.parse("2026-11-21T12:00:00+0545")?.offsetSeconds == 5 * 3600 + 45 * 60)
        // PostgreSQL writes offsets with seconds for old local mean times (Amsterdam before 1937).
        #expect(ISOTimestamp.parse("1930-01-01 00:00:00+00:19:32")?.offsetSeconds == 19 * 60 + 32)
        #expect(ISOTime.parse("2026-11-21T12:00:00+24:00") == nil)
        #expect(ISOTime.parse("2026-11-21T12:00:00+08:60") == nil)
        #expect(ISOTime.parse("2026-11-21T12:00:00+08:") == nil)
        #expect(ISOTime.parse("2026-11-21T12:00:00+8") == nil)
    }

    @Test func leapDays() {
        #expect(ISOTime.parse("2024-02-29T00:00:00Z") == Date(timeIntervalSince1970: 1_709_164_800))
        #expect(ISOTime.parse("2000-02-29T00:00:00Z") != nil)
        #expect(ISOTime.parse("2026-02-29T00:00:00Z") == nil)
        #expect(ISOTime.parse("1900-02-29T00:00:00Z") == nil)
        #expect(ISOTime.parse("2026-04-31T00:00:00Z") == nil)
        #expect(ISOTime.formatUTC(Date(timeIntervalSince1970: 1_709_164_800)) == "2024-02-29T00:00:00.000000Z")
    }

    @Test func badInput() {
        for text in [
            "", "yesterday", "2026-11-21", "2026-11-21T", "2026-11-21T12", "2026-11-21T12:00:0Z", "2026-13-01T00:00:00Z",
            "2026-00-10T00:00:00Z", "2026-11-00T00:00:00Z", "2026-11-21T24:00:00Z", "2026-11-21T12:60:00Z",
            "2026-11-21T12:00:61Z", "2026/11/21 12:00:00Z", "2026-11-21X12:00:00Z", "2026-11-21T12:00:00Z ",
            " 2026-11-21T12:00:00Z", "2026-11-21T12:00:00+08:00x", "2026-11-21T12:00:00 BC", "10000-01-01T00:00:00Z",
            "２０２６-11-21T12:00:00Z", "2026-11-21T12:00:00.5.5Z"
        ] {
            #expect(ISOTime.parse(text) == nil, "\(text)")
            #expect(ISOTime.parseMilliseconds(text) == nil, "\(text)")
        }
    }

    @Test func aLeapSecondCountsIntoTheNextMinute() {
        #expect(ISOTime.parse("2016-12-31T23:59:60Z") == ISOTime.parse("2017-01-01T00:00:00Z"))
    }

    @Test func formatUTCRoundTrips() {
        for text in [
            "2026-11-21 12:00:00+00", "2026-11-21T20:00:00.5+08:00", "1999-12-31 23:59:59.999999Z", "1960-06-15T03:04:05.25Z"
        ] {
            let date = ISOTime.parse(text)
            #expect(date != nil)
            if let date { #expect(ISOTime.parse(ISOTime.formatUTC(date)) == date, "\(text)") }
        }
        #expect(ISOTime.formatUTC(reference) == "2026-11-21T12:00:00.000000Z")
        #expect(ISOTime.formatUTC(Date(timeIntervalSince1970: -0.5)) == "1969-12-31T23:59:59.500000Z")
        // Microseconds round; 999999.6 carries into the next second.
        #expect(ISOTime.formatUTC(Date(timeIntervalSince1970: 1_795_262_399.9999996)) == "2026-11-21T12:00:00.000000Z")
    }

    @Test func formatMillisecondsAtAnOffset() {
        let sg = 8 * 3600
        #expect(ISOTime.format(milliseconds: 1_795_262_400_000, offsetSeconds: sg) == "2026-11-21T20:00:00.000+08:00")
        #expect(ISOTime.format(milliseconds: 1_795_291_199_999, offsetSeconds: sg) == "2026-11-22T03:59:59.999+08:00")
        #expect(ISOTime.format(milliseconds: -1, offsetSeconds: 0) == "1969-12-31T23:59:59.999Z")
        #expect(ISOTime.format(milliseconds: 0, offsetSeconds: -(9 * 3600 + 30 * 60)) == "1969-12-31T14:30:00.000-09:30")
        for ms: Int64 in [0, -1, 1_795_262_400_123, 951_782_400_000, -2_208_988_800_001] {
            #expect(ISOTime.parseMilliseconds(ISOTime.format(milliseconds: ms, offsetSeconds: sg)) == ms)
        }
    }

    @Test func agreesWithFoundation() {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        formatter.timeZone = TimeZone(secondsFromGMT: 8 * 3600)
        for seconds in stride(from: -2_000_000_000, through: 4_000_000_000, by: 7_654_321) {
            let date = Date(timeIntervalSince1970: Double(seconds))
            let text = formatter.string(from: date)
            #expect(ISOTime.parse(text) == date, "\(text)")
            #expect(ISOTime.formatUTC(date).prefix(19) == ISO8601DateFormatter().string(from: date).prefix(19))
        }
    }
}
