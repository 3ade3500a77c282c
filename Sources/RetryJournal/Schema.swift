import LibPQ

/// The tables of `postman_retry`, named once (as quoted identifiers, like every configured name).
enum Schema {
    static var runs: PGQuery { table("runs") }
    static var journal: PGQuery { table("journal") }
    static var skips: PGQuery { table("skips") }
    static var malformedRows: PGQuery { table("malformed_rows") }
    static var requestSeconds: PGQuery { table("request_seconds") }
    static var runCampaigns: PGQuery { table("run_campaigns") }
    static var batchCalls: PGQuery { table("batch_calls") }
    static var campaignLeases: PGQuery { table("campaign_leases") }
    static var runHolders: PGQuery { table("run_holders") }
    static var runGate: PGQuery { table("run_gate") }

    private static func table(_ name: String) -> PGQuery { "\(qualified: [Migrator.schema, name])" }
}

extension PGQuery.StringInterpolation {
    /// A journal word as an SQL literal. The statements keep the constant text they always had (the
    /// planner matches `state <> 'done'` against the partial index `journal_work`, which a parameter
    /// would not), but its spelling comes from the enum.
    mutating func appendInterpolation(literal word: some JournalSpelling) {
        precondition(word.rawValue.allSatisfy { $0.isLetter || $0 == "_" }, "journal words are plain identifiers")
        appendInterpolation(unescaped: "'\(word.rawValue)'")
    }

    /// `('a', 'b')`, for `IN`.
    mutating func appendInterpolation<Word: JournalSpelling>(literals words: [Word]) {
        appendInterpolation(unescaped: "(")
        for (index, word) in words.enumerated() {
            if index > 0 { appendInterpolation(unescaped: ", ") }
            appendInterpolation(literal: word)
        }
        appendInterpolation(unescaped: ")")
    }
}
