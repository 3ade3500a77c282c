import CLibPQ

/// A five-character SQLSTATE code, with names only for the codes the project acts on.
public struct SQLState: Hashable, Sendable, CustomStringConvertible {
    public let code: String
    public init(_ code: String) { self.code = code }
    public var description: String { code }
    /// The two-character class (`08` connection exception, `40` transaction rollback, …).
    public var errorClass: String { String(code.prefix(2)) }

    public static let uniqueViolation = SQLState("23505")
    public static let foreignKeyViolation = SQLState("23503")
    public static let checkViolation = SQLState("23514")
    public static let serializationFailure = SQLState("40001")
    public static let deadlockDetected = SQLState("40P01")
    public static let queryCanceled = SQLState("57014")
    public static let lockNotAvailable = SQLState("55P03")
    public static let adminShutdown = SQLState("57P01")
    public static let crashShutdown = SQLState("57P02")
    public static let cannotConnectNow = SQLState("57P03")
    public static let tooManyConnections = SQLState("53300")
    public static let undefinedTable = SQLState("42P01")
    public static let insufficientPrivilege = SQLState("42501")
    public static let undefinedColumn = SQLState("42703")
}

/// Every failure of the wrapper. `description` is deliberately short and free of row data (server
/// `detail` often quotes values); `debugDescription` carries everything.
public struct PGError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public enum Kind: String, Sendable {
        case connectionFailed, connectionLost, server, decoding, copyFailed, misuse, badResponse
    }

    public var kind: Kind
    public var sqlState: SQLState?
    public var message: String
    public var detail: String?
    public var hint: String?
    public var constraint: String?
    public var table: String?
    public var column: String?
    /// The SQL text (never parameter values).
    public var query: String?
    /// A failure of the ROLLBACK that followed this error; the original error is kept.
    public var rollbackFailure: String?
    /// In a pipelined transaction: the index (in the caller's statements) of the statement that failed.
    public var statementIndex: Int?

    public init(
        _ kind: Kind, _ message: String, sqlState: SQLState? = nil, detail: String? = nil, hint: String? = nil,
        constraint: String? = nil, table: String? = nil, column: String? = nil, query: String? = nil
    ) {
        self.kind = kind
        self.message = message
        self.sqlState = sqlState
        self.detail = detail
        self.hint = hint
        self.constraint = constraint
        self.table = table
        self.column = column
        self.query = query
    }

    /// Worth retrying the whole unit of work later: connection loss, serialization failure, deadlock,
    /// server shutting down or refusing connections for now.
    public var isTransient: Bool {
        switch kind {
        case .connectionFailed, .connectionLost: return true
        case .server:
            guard let state = sqlState else { return false }
            if state.errorClass == "08" { return true }
            return [
                .serializationFailure, .deadlockDetected, .adminShutdown, .crashShutdown, .cannotConnectNow,
                .tooManyConnections
            ].contains(state)
        default: return false
        }
    }

    public var description: String {
        var text = "PostgreSQL \(kind.rawValue) error"
        if let sqlState { text += " [\(sqlState)]" }
        text += ": \(message)"
        if let constraint { text += " (constraint \(constraint))" }
        return text
    }

    public var debugDescription: String {
        var parts = [description]
        if let detail { parts.append("detail: \(detail)") }
        if let hint { parts.append("hint: \(hint)") }
        if let table { parts.append("table: \(table)") }
        if let column { parts.append("column: \(column)") }
        if let query { parts.append("query: \(query)") }
        if let rollbackFailure { parts.append("rollback failed too: \(rollbackFailure)") }
        return parts.joined(separator: "; ")
    }

    /// Reads every diagnostic field out of a failed result (the result is still alive here).
    static func fromResult(_ result: OpaquePointer, query: String?) -> PGError {
        func field(_ code: Character) -> String? {
            guard let ascii = code.asciiValue, let pointer = PQresultErrorField(result, Int32(ascii)) else { return nil }
            return String(cString: pointer)
        }
        let primary = field("M") ?? String(cString: PQresultErrorMessage(result)).trimmingTrailingNewlines()
        return PGError(
            .server, primary, sqlState: field("C").map(SQLState.init), detail: field("D"), hint: field("H"),
            constraint: field("n"), table: field("t"), column: field("c"), query: query)
    }
}

extension String {
    func trimmingTrailingNewlines() -> String {
        var text = self
        while let last = text.last, last.isNewline || last == " " { text.removeLast() }
        return text
    }
}
