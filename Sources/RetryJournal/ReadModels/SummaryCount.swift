/// One count of `RunSummary` (a total or a campaign's): what the metrics' `outcome` label and the
/// report's bars name. The name is the summary.json key, spelt once in `RunSummary.Counts.CodingKeys`.
public enum SummaryCount: Sendable, CaseIterable {
    case selected, retried, succeeded, failed, pending, exhausted, notFound, reconciled, batchNotRetryable, rejected
    case conflict, carriedOver, skipped

    /// The summary.json key (`not_found`, `carried_over`, …).
    public var name: String { codingKey.stringValue }

    public init?(name: String) {
        guard let count = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = count
    }

    private var codingKey: RunSummary.Counts.CodingKeys {
        switch self {
        case .selected: .selected
        case .retried: .retried
        case .succeeded: .succeeded
        case .failed: .failed
        case .pending: .pending
        case .exhausted: .exhausted
        case .notFound: .notFound
        case .reconciled: .reconciled
        case .batchNotRetryable: .batchNotRetryable
        case .rejected: .rejected
        case .conflict: .conflict
        case .carriedOver: .carriedOver
        case .skipped: .skipped
        }
    }

    public func value(in tally: some OutcomeTally) -> Int {
        switch self {
        case .selected: tally.selected
        case .retried: tally.retried
        case .succeeded: tally.succeeded
        case .failed: tally.failed
        case .pending: tally.pending
        case .exhausted: tally.exhausted
        case .notFound: tally.notFound
        case .reconciled: tally.reconciled
        case .batchNotRetryable: tally.batchNotRetryable
        case .rejected: tally.rejected
        case .conflict: tally.conflict
        case .carriedOver: tally.carriedOver
        case .skipped: tally.skipped
        }
    }
}
