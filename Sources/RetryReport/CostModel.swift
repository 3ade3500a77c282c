import Foundation

/// Prices for the cost estimate (`postman-v2-api.md` section 8: SGD 0.046 per segment for +65
/// numbers, 0.23 for all others, GST on top). A parameter rather than constants so the config
/// file can set it later.
public struct CostModel: Sendable, Equatable, Codable {
    public var currency: String
    public var localPerSegment: Decimal
    public var foreignPerSegment: Decimal
    public var segmentsPerMessage: Int
    public var gstRate: Decimal
    /// Recipients starting with this are local (priced by number, not by where the phone is).
    public var localPrefix: String
    /// Final codes Postman does not bill.
    public var freeCodes: Set<String>

    public init(
        currency: String = "SGD", localPerSegment: Decimal = Decimal(string: "0.046")!,
        foreignPerSegment: Decimal = Decimal(string: "0.23")!, segmentsPerMessage: Int = 1,
        gstRate: Decimal = Decimal(string: "0.09")!, localPrefix: String = "65",
        freeCodes: Set<String> = ["delivery_unknown_error", "server_unknown_error"]
    ) {
        self.currency = currency
        self.localPerSegment = localPerSegment
        self.foreignPerSegment = foreignPerSegment
        self.segmentsPerMessage = segmentsPerMessage
        self.gstRate = gstRate
        self.localPrefix = localPrefix
        self.freeCodes = freeCodes
    }

    public static let postmanDefault = CostModel()
}

/// The estimated cost of a run's accepted retries. Every accepted retry is billed except those
/// whose final code is free; a retry still pending is counted as billed (the likely case).
public struct CostEstimate: Sendable, Equatable {
    public var model: CostModel
    public var localCharged: Int
    public var foreignCharged: Int
    public var notCharged: Int

    public var localAmount: Decimal { Decimal(localCharged * model.segmentsPerMessage) * model.localPerSegment }
    public var foreignAmount: Decimal { Decimal(foreignCharged * model.segmentsPerMessage) * model.foreignPerSegment }
    public var subtotal: Decimal { localAmount + foreignAmount }
    public var gst: Decimal { Self.rounded(subtotal * model.gstRate) }
    public var total: Decimal { Self.rounded(subtotal) + gst }

    static func rounded(_ value: Decimal, scale: Int = 2) -> Decimal {
        var input = value
        var output = Decimal()
        NSDecimalRound(&output, &input, scale, .plain)
        return output
    }

    /// `12.3` as `12.30` (money is shown with `scale` decimals).
    public static func format(_ value: Decimal, scale: Int = 2) -> String {
        let text = "\(rounded(value, scale: scale))"
        let parts = text.split(separator: ".", maxSplits: 1)
        let whole = parts.first.map(String.init) ?? "0"
        let fraction = parts.count > 1 ? String(parts[1]) : ""
        guard scale > 0 else { return whole }
        return whole + "." + fraction.padding(toLength: scale, withPad: "0", startingAt: 0)
    }

    /// As a JSON number, rounded to `scale` decimals. Parsed from the decimal's text so that the
    /// encoder writes `0.23`, not the binary neighbour `0.22999999999999998`.
    public static func number(_ value: Decimal, scale: Int = 2) -> Double { Double("\(rounded(value, scale: scale))") ?? 0 }
}
