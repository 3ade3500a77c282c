import RetryCore

/// The words the journal stores, each spelt once: the raw value is the SQL text the V001 CHECK
/// constraints allow. Swift code compares and writes these cases, never the strings.
public protocol JournalSpelling: RawRepresentable, Sendable, CaseIterable where RawValue == String {}

/// `journal.state`: how far a message of the run has got.
public enum JournalState: String, JournalSpelling {
    case selected, intent, accepted, done
}

/// `journal.origin`: selected by this run, or carried over from an earlier run's pending retry.
public enum JournalOrigin: String, JournalSpelling {
    case selected
    case carriedOver = "carried_over"
}

/// `journal.write_state`: what happened to the write-back of the row.
public enum WriteState: String, JournalSpelling {
    /// `refused`: the agency table refused the write (V008; the message is in `write_error`).
    case none, pending, written, conflict, refused
}

/// `runs.status`.
public enum RunStatus: String, JournalSpelling {
    case running, interrupted, completed, failed

    /// A run that still has a `finished_at` to come (V001's `runs_one_unfinished` index).
    public var isUnfinished: Bool { self == .running || self == .interrupted }
}

/// `journal.outcome`: the lifecycle's own enum, so the engine and the journal cannot spell it apart.
public typealias JournalOutcome = MessageLifecycle.Outcome
/// `journal.result` of a retried message.
public typealias JournalResult = MessageLifecycle.RetryResult

extension MessageLifecycle.Outcome: JournalSpelling {}
extension MessageLifecycle.RetryResult: JournalSpelling {}
