import LibPQ
import Testing

@Suite struct PGQueryTests {
    @Test func interpolationMakesParameters() {
        let name = "x'; DROP TABLE y; --"
        let count = 3
        let query: PGQuery = "SELECT * FROM t WHERE name = \(name) AND n > \(count)"
        #expect(query.description == "SELECT * FROM t WHERE name = $1 AND n > $2")
        #expect(query.parameters == [name, "3"])
    }

    @Test func fragmentsAreRenumbered() {
        let inner: PGQuery = "a = \(1) AND b = \("two")"
        let outer: PGQuery = "SELECT 1 WHERE c = \(true) AND \(fragment: inner)"
        #expect(outer.description == "SELECT 1 WHERE c = $1 AND a = $2 AND b = $3")
        #expect(outer.parameters == ["t", "1", "two"])
    }

    @Test func arraysBecomeLiterals() {
        let values: [String?] = ["a\"b", nil, "c\\d", ""]
        #expect(values.pgText == #"{"a\"b",NULL,"c\\d",""}"#)
        // Multi-byte text passes through whole; only the ASCII quote and backslash are escaped.
        let wide = ["é\"中", "😀\\", "שלום"]
        #expect(wide.pgText == #"{"é\"中","😀\\","שלום"}"#)
        #expect([Int]().pgText == "{}")
        #expect([1, -2].pgText == #"{"1","-2"}"#)
    }

    @Test func timestampsRoundTripThroughText() {
        for text in ["2026-11-21 12:00:00+00", "2026-11-21T20:00:00.5+08:00", "1999-12-31 23:59:59.999999Z"] {
            let date = PGTimestamp.parse(text)
            #expect(date != nil)
            if let date { #expect(PGTimestamp.parse(PGTimestamp.format(date)) == date) }
        }
        #expect(PGTimestamp.parse("yesterday") == nil)
    }
}
