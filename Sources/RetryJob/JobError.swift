import LibPQ

/// Exit codes (sysexits), as CONTRACT.md section 5 fixes them.
public enum ExitStatus: Int32, Sendable {
    case completed = 0
    case failure = 1
    case usage = 64
    case unavailable = 69
    case temporary = 75
    case noPermission = 77
}

/// A failure that ends the command with a known exit code and a message for the operator.
public struct JobError: Error, CustomStringConvertible, Sendable {
    public var status: ExitStatus
    public var message: String

    public init(_ status: ExitStatus, _ message: String) {
        self.status = status
        self.message = message
    }

    public var description: String { message }

    /// Maps any error to an exit status: database trouble that may pass is temporary (75).
    public static func classify(_ error: any Error) -> JobError {
        if let error = error as? JobError { return error }
        if let error = error as? PGError {
            if error.isTransient {
                return JobError(.temporary, "database unavailable, try again later: \(error)")
            }
            // A statement or lock timeout: the database is busy (an agency job holding locks, a
            // vacuum), not broken. Nothing half-done is lost, so the next run resumes.
            if error.sqlState == .queryCanceled || error.sqlState == .lockNotAvailable {
                return JobError(.temporary, "database busy (statement or lock timeout), try again later: \(error)")
            }
            return JobError(.failure, "database error: \(error)")
        }
        if let error = error as? Migrator.Failure { return JobError(.failure, error.description) }
        return JobError(.failure, "\(error)")
    }
}
