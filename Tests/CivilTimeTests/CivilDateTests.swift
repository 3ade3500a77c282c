import CivilTime
import Testing

@Suite struct CivilDateTests {
    @Test func knownDays() {
        #expect(CivilDate.days(year: 1970, month: 1, day: 1) == 0)
        #expect(CivilDate.days(year: 1969, month: 12, day: 31) == -1)
        #expect(CivilDate.days(year: 2000, month: 3, day: 1) == 11_017)
        #expect(CivilDate.days(year: 2026, month: 11, day: 21) == 20_778)
        #expect(CivilDate.days(year: 1600, month: 1, day: 1) == -135_140)
    }

    @Test func leapYears() {
        #expect(CivilDate.isLeapYear(2024))
        #expect(CivilDate.isLeapYear(2000))
        #expect(!CivilDate.isLeapYear(1900))
        #expect(!CivilDate.isLeapYear(2026))
        #expect(CivilDate.daysInMonth(year: 2024, month: 2) == 29)
        #expect(CivilDate.daysInMonth(year: 2100, month: 2) == 28)
        // 29 February is the day before 1 March, in a leap year only.
        #expect(CivilDate.days(year: 2024, month: 3, day: 1) - CivilDate.days(year: 2024, month: 2, day: 29) == 1)
        #expect(CivilDate.days(year: 1900, month: 3, day: 1) - CivilDate.days(year: 1900, month: 2, day: 28) == 1)
        #expect(CivilDate.days(year: 2001, month: 1, day: 1) - CivilDate.days(year: 2000, month: 1, day: 1) == 366)
    }

    @Test func roundTripsEveryFewDaysOverSixCenturies() {
        for days in stride(from: -150_000, through: 100_000, by: 7) {
            let (y, m, d) = CivilDate.date(days: days)
            #expect(CivilDate.days(year: y, month: m, day: d) == days)
            #expect((1...CivilDate.daysInMonth(year: y, month: m)).contains(d))
        }
    }

    @Test func floorDivision() {
        #expect(CivilDate.floorDivide(7, 2) == 3)
        #expect(CivilDate.floorDivide(-1, 86_400) == -1)
        #expect(CivilDate.floorDivide(-86_400, 86_400) == -1)
        #expect(CivilDate.floorDivide(-86_401, 86_400) == -2)
    }
}
