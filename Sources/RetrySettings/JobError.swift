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

/// An error of a module above this one that knows how the command must end (a lost hold on the run: 75).
public protocol ErrorWithExitStatus: Error, CustomStringConvertible {
    var exitStatus: ExitStatus { get }
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
        if let error = error as? any ErrorWithExitStatus { return JobError(error.exitStatus, error.description) }
        if let error = error as? PGError {
            if isRefusedConnection(error) { return refusedConnection(error) }
            if error.isTransient {
                return JobError(.temporary, "database unavailable, try again later: \(error)")
            }
            // A statement or lock timeout: the database is busy (an agency job holding locks, a
            // vacuum), not broken. Nothing half-done is lost, so the next run resumes.
            if error.sqlState == .queryCanceled || error.sqlState == .lockNotAvailable {
                return JobError(.temporary, "database busy (statement or lock timeout), try again later: \(error)")
            }
            // A grant missing is a setting to fix: waiting will not (and a scheduler must not retry it for ever).
            if error.sqlState == .insufficientPrivilege {
                return JobError(
                    .usage,
                    "the job's database role lacks a privilege (grant it, see docs/operations.md \"Before the first run\"; "
                        + "the next run resumes): \(error)")
            }
            return JobError(.failure, "database error: \(error)")
        }
        // Anything else (a `Migrator.Failure` among them) keeps its own description.
        return JobError(.failure, "\(error)")
    }

    /// A failed connection attempt: refused credentials or a missing database are settings to fix
    /// (64); anything else (server down, unreachable, timed out, too many clients) is temporary (75).
    public static func connectionFailure(_ error: PGError) -> JobError {
        if isRefusedConnection(error) { return refusedConnection(error) }
        if isBadConnectionSetting(error) {
            return JobError(
                .usage,
                "the database connection settings are not valid (waiting will not fix it): \(error.message). "
                    + "Check --database-url / DATABASE_URL and the PG* variables")
        }
        return JobError(.temporary, "cannot connect to PostgreSQL, try again later: \(error.message)")
    }

    /// SQLSTATEs that refuse the job's connection for good: bad password (28P01), a role that does not
    /// exist or may not connect (28000), a database that does not exist (3D000).
    public static let refusedConnectionStates: Set<String> = ["28P01", "28000", "3D000"]

    /// What libpq says, in its own words, when the server refused the connection at start-up and no
    /// SQLSTATE reached the job (a failed PQconnectdb has no result to read one from).
    static let refusedConnectionPhrases = [
        "password authentication failed", "authentication failed", "does not exist", "no pg_hba.conf entry",
        "pg_hba.conf rejects connection", "no password supplied", "permission denied for database"
    ]

    /// What libpq says of a connection string or setting it cannot use, before (or instead of) reaching a
    /// server: a malformed URL, an unknown option, a value out of range, SSL required of a server without it.
    static let badConnectionSettingPhrases = [
        "invalid connection option", "invalid integer value", "invalid port number", "invalid uri", " in uri:",
        "invalid percent-encoded token", "missing \"=\" after", "unterminated quoted string",
        "server does not support ssl, but ssl was required", "could not match"
    ]

    /// True when libpq refused the connection settings themselves: a setting to fix, not a server to wait for.
    public static func isBadConnectionSetting(_ error: PGError) -> Bool {
        guard error.kind == .connectionFailed else { return false }
        let text = error.message.lowercased()
        if badConnectionSettingPhrases.contains(where: { text.contains($0) }) { return true }
        // "invalid sslmode value", "invalid target_session_attrs value", and the like.
        return text.contains(#/invalid [a-z_]+ value/#)
    }

    /// True when PostgreSQL refused the credentials or the database: waiting will not fix it.
    public static func isRefusedConnection(_ error: PGError) -> Bool {
        if let state = error.sqlState { return refusedConnectionStates.contains(state.code) }
        guard error.kind == .connectionFailed else { return false }
        let text = error.message.lowercased()
        return refusedConnectionPhrases.contains { text.contains($0) }
    }

    static func refusedConnection(_ error: PGError) -> JobError {
        JobError(
            .usage,
            "PostgreSQL refused the job's connection (the role, its password or the database name is wrong; waiting "
                + "will not fix it): \(error.message). Check --database-url / DATABASE_URL, the PG* variables and ~/.pgpass")
    }
}
