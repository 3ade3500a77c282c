import CLibPQ
import Foundation
import Logging
import Synchronization

/// How to reach the server. Everything not given here comes from libpq itself (`PG*` variables,
/// `~/.pgpass`, service files), so secrets never have to pass through the command line.
public struct PGConfiguration: Sendable {
    /// A URL (`postgresql://…`) or a conninfo string (`host=… dbname=…`); nil means libpq's defaults.
    public var url: String?
    public var applicationName: String
    public var connectTimeoutSeconds: Int
    /// `statement_timeout` in milliseconds, if any.
    public var statementTimeoutMilliseconds: Int?
    /// With a value: TCP keepalives and libpq's `tcp_user_timeout`, so a call on a connection whose
    /// network went silent fails within about this long instead of waiting for ever.
    public var networkTimeoutMilliseconds: Int?
    /// Settings made with `SET LOCAL` at the start of every `withTransaction`, in the BEGIN's own round
    /// trip. Unlike session settings they hold through a transaction-pooling PgBouncer (each transaction
    /// may run on another server connection) and never leak to the pool's other clients. Names and
    /// values are the caller's constants: letters, digits, `_` and `.` only.
    public var transactionSettings: [String: String] = [:]

    public init(
        url: String? = nil, applicationName: String = "postman-retry", connectTimeoutSeconds: Int = 10,
        statementTimeoutMilliseconds: Int? = nil
    ) {
        self.url = url
        self.applicationName = applicationName
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.statementTimeoutMilliseconds = statementTimeoutMilliseconds
    }
}

/// One libpq connection. The actor runs on a thread of its own (`ConnectionThread`), and every libpq
/// call is synchronous inside it: the actor serialises use of the `PGconn` (libpq's rule) and the
/// blocking calls stay off the cooperative pool and off every other connection's thread.
public actor PGConnection {
    private let thread: ConnectionThread
    // nonisolated(unsafe): only touched inside the actor, and in deinit, which has exclusive access.
    private nonisolated(unsafe) var handle: OpaquePointer?
    private let canceller = QueryCanceller()
    /// Why the connection was closed from inside (a pipeline that broke off), if it was.
    private var lostReason: String?
    /// What `withTransaction` sends to begin: BEGIN and the configuration's `SET LOCAL`s, one statement
    /// each (`pipelinedTransaction` sends them one by one: the extended protocol takes one statement a time).
    private var beginStatements = ["BEGIN"]
    private nonisolated(unsafe) var noticeSink: Unmanaged<NoticeSink>?
    public let logger: Logger

    public nonisolated var unownedExecutor: UnownedSerialExecutor { thread.asUnownedSerialExecutor() }

    private init(thread: ConnectionThread, logger: Logger) {
        self.thread = thread
        self.logger = logger
    }

    /// Opens a connection; the blocking connect runs on the connection's own thread.
    public static func connect(_ configuration: PGConfiguration, logger: Logger) async throws -> PGConnection {
        let connection = PGConnection(thread: ConnectionThread(name: "libpq"), logger: logger)
        try await connection.open(configuration)
        return connection
    }

    private func open(_ configuration: PGConfiguration) throws {
        var pairs: [(String, String)] = []
        // `dbname` first with expand_dbname=1: a URL or conninfo there is expanded, and the keywords
        // after it win over what it says.
        if let url = configuration.url, !url.isEmpty { pairs.append(("dbname", url)) }
        pairs.append(("application_name", configuration.applicationName))
        pairs.append(("connect_timeout", String(configuration.connectTimeoutSeconds)))
        pairs.append(("client_encoding", "UTF8"))
        if let timeout = configuration.networkTimeoutMilliseconds {
            pairs.append(("keepalives", "1"))
            pairs.append(("keepalives_idle", String(max(1, timeout / 3000))))
            pairs.append(("keepalives_interval", String(max(1, timeout / 6000))))
            pairs.append(("keepalives_count", "3"))
            pairs.append(("tcp_user_timeout", String(timeout)))
        }
        // The session settings the decoders rely on are SET after connecting, not passed as
        // `options`: that keyword would replace the user's own (`options=-c search_path=…` in
        // DATABASE_URL, or PGOPTIONS), silently dropping their statement timeout or search path.

        let keys = pairs.map { strdup($0.0) }
        let values = pairs.map { strdup($0.1) }
        defer {
            for key in keys { free(key) }
            for value in values { free(value) }
        }
        let keyPointers: [UnsafePointer<CChar>?] = keys.map { UnsafePointer($0) } + [nil]
        let valuePointers: [UnsafePointer<CChar>?] = values.map { UnsafePointer($0) } + [nil]
        let conn = PQconnectdbParams(keyPointers, valuePointers, 1)
        guard let conn else { throw PGError(.connectionFailed, "libpq could not allocate a connection") }
        if PQstatus(conn) != CONNECTION_OK {
            // Copy the message out before PQfinish frees it; PQfinish even on failure (pitfall 6).
            let message = String(cString: PQerrorMessage(conn)).trimmingTrailingNewlines()
            PQfinish(conn)
            throw PGError(.connectionFailed, message.isEmpty ? "could not connect" : message)
        }
        let plain = { (text: String) in !text.isEmpty && text.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." }
        }
        for (name, value) in configuration.transactionSettings.sorted(by: { $0.key < $1.key }) {
            guard plain(name), plain(value) else {
                PQfinish(conn)
                throw PGError(.misuse, "transaction setting \(name) = \(value): only letters, digits, _ and . are allowed")
            }
            beginStatements.append("SET LOCAL \(name) TO '\(value)'")
        }
        handle = conn
        var settings = "SET DateStyle = ISO; SET TimeZone = 'UTC'; SET IntervalStyle = iso_8601"
        if let timeout = configuration.statementTimeoutMilliseconds { settings += "; SET statement_timeout = \(timeout)" }
        do {
            try executeScript(PGQuery(unsafeSQL: settings))
        } catch {
            PQfinish(conn)
            handle = nil
            throw error
        }
        canceller.set(PQgetCancel(conn))
        let sink = Unmanaged.passRetained(NoticeSink(logger: logger))
        noticeSink = sink
        PQsetNoticeReceiver(conn, noticeReceiver, sink.toOpaque())
        logger.debug(
            "connected to PostgreSQL",
            metadata: ["db.server_version": "\(PQserverVersion(conn))", "db.libpq_version": "\(PQlibVersion())"])
    }

    /// Closes the connection; safe to call more than once.
    public func close() {
        guard let conn = handle else { return }
        handle = nil
        canceller.set(nil)
        PQfinish(conn)
        noticeSink?.release()
        noticeSink = nil
    }

    deinit {
        if let conn = handle { PQfinish(conn) }
        canceller.set(nil)
        noticeSink?.release()
        thread.stop()
    }

    /// Whether libpq still considers the connection usable.
    public var isOpen: Bool { handle.map { PQstatus($0) == CONNECTION_OK } ?? false }

    /// The server's process id for this session (for `pg_terminate_backend` in tests and tools).
    public var backendPID: Int32 { handle.map { PQbackendPID($0) } ?? 0 }

    // MARK: - Running statements

    /// Runs one statement and returns its rows. Cancelling the calling task sends a cancel request to
    /// the server, so a long statement ends early with SQLSTATE 57014.
    public func query(_ query: PGQuery) async throws -> PGRows {
        try Task.checkCancellation()
        let canceller = self.canceller
        return try await withTaskCancellationHandler {
            try self.execute(query)
        } onCancel: {
            canceller.cancel()
        }
    }

    /// Runs one statement synchronously on this connection (use inside `withTransaction`).
    @discardableResult
    public func execute(_ query: PGQuery) throws -> PGRows {
        let conn = try liveHandle()
        let sql = try query.render(identifier: escapeIdentifier)
        let start = ContinuousClock.now
        let result = try Self.withParameterPointers(query.parameters, sql: sql) { count, values in
            PQexecParams(conn, sql, count, nil, values, nil, nil, 0)
        }
        let rows = try consume(result, conn: conn, sql: sql)
        logger.trace(
            "statement done",
            metadata: ["db.statement": "\(sql)", "db.rows": "\(rows.count)", "db.duration": "\(ContinuousClock.now - start)"])
        return rows
    }

    /// Calls `body` with text parameters as libpq wants them: one NUL-terminated arena for all of them
    /// (libpq ignores lengths for text format), nil for SQL NULL.
    private static func withParameterPointers<T>(
        _ parameters: [String?], sql: String, _ body: (Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> T
    ) throws -> T {
        try checkParameters(parameters, sql: sql)
        var arena: [UInt8] = []
        var offsets: [Int?] = []
        offsets.reserveCapacity(parameters.count)
        for parameter in parameters {
            guard let parameter else {
                offsets.append(nil)
                continue
            }
            offsets.append(arena.count)
            arena.append(contentsOf: parameter.utf8)
            arena.append(0)
        }
        return arena.withUnsafeBufferPointer { buffer in
            let base = UnsafeRawPointer(buffer.baseAddress)
            let values: [UnsafePointer<CChar>?] = offsets.map { offset in
                guard let offset, let base else { return nil }
                return base.advanced(by: offset).assumingMemoryBound(to: CChar.self)
            }
            return values.withUnsafeBufferPointer { body(Int32(parameters.count), $0.baseAddress) }
        }
    }

    /// Text parameters end at their first NUL byte in libpq: one that holds a NUL is refused, not cut.
    private static func checkParameters(_ parameters: [String?], sql: String) throws {
        for (index, parameter) in parameters.enumerated() {
            guard let parameter, holdsNUL(parameter) else { continue }
            throw PGError(
                .misuse, "parameter $\(index + 1) contains a NUL byte, which PostgreSQL text cannot hold", query: sql)
        }
    }

    /// `memchr` over the string's own UTF-8 bytes (a native string's are contiguous): a flush's arrays of a
    /// thousand ids made the byte-by-byte `utf8.contains(0)` 1% of a run's CPU (issue 17).
    static func holdsNUL(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            guard let base = bytes.baseAddress, !bytes.isEmpty else { return false }
            return memchr(base, 0, bytes.count) != nil
        }
    }

    /// Runs a script of several statements without parameters (migrations). The first failing
    /// statement's error is thrown; libpq stops there.
    public func executeScript(_ script: PGQuery) throws {
        let conn = try liveHandle()
        let sql = try script.render(identifier: escapeIdentifier)
        guard script.parameters.isEmpty else { throw PGError(.misuse, "a script takes no parameters", query: sql) }
        _ = try consume(PQexec(conn, sql), conn: conn, sql: sql)
    }

    /// Runs `body` in a transaction: COMMIT when it returns, ROLLBACK when it throws (the original error
    /// is rethrown, with any rollback failure attached to it).
    public func withTransaction<Result: Sendable>(
        _ body: @Sendable (isolated PGConnection) throws -> Result
    ) throws -> Result {
        try executeScript(PGQuery(unsafeSQL: beginStatements.joined(separator: "; ")))
        do {
            let value = try body(self)
            try execute("COMMIT")
            return value
        } catch {
            try rollback(after: error)
        }
    }

    /// Runs `statements` in one transaction in two round trips instead of one per statement (issue 17:
    /// every wake-up of this thread and of the server costs both CPU). BEGIN, the configuration's
    /// `SET LOCAL`s and the statements go out at once in libpq's pipeline mode; the server runs them in
    /// order and stops at the first that fails (its error carries its `statementIndex`). `decide` then
    /// reads their rows and COMMIT follows; when a statement failed or `decide` throws, ROLLBACK follows
    /// instead and the error is rethrown, so nothing of the statements is kept.
    ///
    /// The connection stays in blocking mode: libpq reads the server's answers into its buffer whenever
    /// it cannot send (pqSendSome), so a long pipeline cannot deadlock on full socket buffers.
    public func pipelinedTransaction<Result: Sendable>(
        _ statements: [PGQuery], then decide: ([PGRows]) throws -> Result
    ) throws -> Result {
        let conn = try liveHandle()
        let queries = beginStatements.map { PGQuery(unsafeSQL: $0) } + statements
        let rendered = try queries.map { (sql: try $0.render(identifier: escapeIdentifier), parameters: $0.parameters) }
        // Everything that can be refused is refused before anything is sent (a misuse half-way through
        // the sends would leave BEGIN and the statements before it on the server).
        for (sql, parameters) in rendered { try Self.checkParameters(parameters, sql: sql) }
        guard PQenterPipelineMode(conn) == 1 else { throw connectionError(conn, sql: rendered[0].sql) }
        var rows: [PGRows] = []
        var failure: PGError?
        var syncSent = false
        do {
            for (sql, parameters) in rendered {
                let sent = try Self.withParameterPointers(parameters, sql: sql) { count, values in
                    PQsendQueryParams(conn, sql, count, nil, values, nil, nil, 0)
                }
                guard sent == 1 else { throw connectionError(conn, sql: sql) }
            }
            guard PQpipelineSync(conn) == 1 else { throw connectionError(conn, sql: rendered[rendered.count - 1].sql) }
            syncSent = true
            for (index, (sql, _)) in rendered.enumerated() {
                guard let result = PQgetResult(conn) else { throw connectionError(conn, sql: sql) }
                if PQresultStatus(result) == PGRES_PIPELINE_ABORTED {
                    PQclear(result)
                } else {
                    do {
                        rows.append(try consume(result, conn: conn, sql: sql))
                    } catch var error as PGError {
                        let statement = index - beginStatements.count
                        error.statementIndex = statement >= 0 ? statement : nil
                        failure = failure ?? error
                    }
                }
                // Each statement's results end with a NULL.
                while let extra = PQgetResult(conn) { PQclear(extra) }
            }
            guard let sync = PQgetResult(conn) else { throw connectionError(conn, sql: "(pipeline sync)") }
            let synced = PQresultStatus(sync) == PGRES_PIPELINE_SYNC
            PQclear(sync)
            guard synced, PQexitPipelineMode(conn) == 1 else { throw connectionError(conn, sql: "(pipeline sync)") }
        } catch {
            leavePipeline(conn, syncSent: syncSent)
            throw error
        }
        do {
            if let failure { throw failure }
            let value = try decide(Array(rows.dropFirst(beginStatements.count)))
            try execute("COMMIT")
            return value
        } catch {
            try rollback(after: error)
        }
    }

    /// ROLLBACK after `error` (when the connection still works), then `error` again, with any rollback
    /// failure attached to it.
    private func rollback(after error: any Error) throws -> Never {
        if handle != nil, isOpen {
            do {
                try execute("ROLLBACK")
            } catch let rollbackError {
                if var original = error as? PGError {
                    original.rollbackFailure = String(describing: rollbackError)
                    throw original
                }
            }
        }
        throw error
    }

    /// After a pipeline broke off: reads what is left up to its sync, leaves pipeline mode and rolls back
    /// the transaction the pipeline began (it must not carry over into the connection's next statement).
    /// A connection that cannot get back to idle (lost, or left mid-pipeline or mid-transaction) is closed
    /// and remembered as lost: every later call fails as a connection loss (transient, exit 75), never
    /// half-way through a pipeline and never as a misuse.
    private func leavePipeline(_ conn: OpaquePointer, syncSent: Bool) {
        var left = PQpipelineStatus(conn) == PQ_PIPELINE_OFF
        // (Without a sync the server would wait for more of the pipeline, and so would we.)
        if !left, PQstatus(conn) == CONNECTION_OK, syncSent || PQpipelineSync(conn) == 1 {
            var ends = 0
            while PQstatus(conn) == CONNECTION_OK, ends < 2 {
                guard let result = PQgetResult(conn) else {
                    ends += 1
                    continue
                }
                ends = 0
                let synced = PQresultStatus(result) == PGRES_PIPELINE_SYNC
                PQclear(result)
                if synced { break }
            }
            left = PQexitPipelineMode(conn) == 1
        }
        if left, PQtransactionStatus(conn) == PQTRANS_IDLE || (try? execute("ROLLBACK")) != nil { return }
        let message = String(cString: PQerrorMessage(conn)).trimmingTrailingNewlines()
        close()
        lostReason = message.isEmpty ? "the connection broke off in the middle of a pipeline" : message
    }

    // MARK: - COPY

    /// Streams rows into `COPY … FROM STDIN (FORMAT csv)`; nil fields are NULL, every other field is
    /// quoted. Lengths are UTF-8 byte counts. Returns the number of rows the server loaded.
    @discardableResult
    public func copyIn(_ command: PGQuery, rows: [[String?]]) throws -> Int {
        let conn = try liveHandle()
        let sql = try command.render(identifier: escapeIdentifier)
        guard command.parameters.isEmpty else { throw PGError(.misuse, "COPY takes no parameters", query: sql) }
        guard let start = PQexec(conn, sql) else { throw connectionError(conn, sql: sql) }
        let startStatus = PQresultStatus(start)
        if startStatus != PGRES_COPY_IN {
            let error =
                startStatus == PGRES_FATAL_ERROR
                ? PGError.fromResult(start, query: sql) : PGError(.misuse, "statement did not start COPY FROM STDIN", query: sql)
            PQclear(start)
            drain(conn)
            throw error
        }
        PQclear(start)

        var buffer: [UInt8] = []
        buffer.reserveCapacity(70_000)
        var sendFailure: String?
        func flush() {
            guard !buffer.isEmpty, sendFailure == nil else { return }
            let sent = buffer.withUnsafeBufferPointer { bytes in
                bytes.withMemoryRebound(to: CChar.self) { PQputCopyData(conn, $0.baseAddress, Int32($0.count)) }
            }
            if sent != 1 { sendFailure = String(cString: PQerrorMessage(conn)).trimmingTrailingNewlines() }
            buffer.removeAll(keepingCapacity: true)
        }
        for row in rows {
            for (index, field) in row.enumerated() {
                if index > 0 { buffer.append(UInt8(ascii: ",")) }
                guard let field else { continue }
                buffer.append(UInt8(ascii: "\""))
                for byte in field.utf8 {
                    if byte == UInt8(ascii: "\"") { buffer.append(byte) }
                    buffer.append(byte)
                }
                buffer.append(UInt8(ascii: "\""))
            }
            buffer.append(UInt8(ascii: "\n"))
            if buffer.count >= 65_536 { flush() }
        }
        flush()
        let ended = PQputCopyEnd(conn, sendFailure)
        var failure: PGError?
        var loaded = 0
        while let result = PQgetResult(conn) {
            let status = PQresultStatus(result)
            if status == PGRES_COMMAND_OK {
                loaded = Int(String(cString: PQcmdTuples(result))) ?? 0
            } else if failure == nil {
                failure = PGError.fromResult(result, query: sql)
                failure?.kind = .copyFailed
            }
            PQclear(result)
        }
        if let failure { throw failure }
        if ended != 1 || sendFailure != nil {
            throw PGError(.copyFailed, sendFailure ?? "COPY could not be ended", query: sql)
        }
        return loaded
    }

    // MARK: - Helpers

    private func liveHandle() throws -> OpaquePointer {
        guard let conn = handle else {
            if let lostReason { throw PGError(.connectionLost, lostReason) }
            throw PGError(.misuse, "the connection is closed")
        }
        return conn
    }

    /// Quotes a name with `PQescapeIdentifier` (the only way names reach SQL).
    public func escapeIdentifier(_ name: String) throws -> String {
        let conn = try liveHandle()
        guard let escaped = PQescapeIdentifier(conn, name, name.utf8.count) else {
            throw PGError(.misuse, "could not quote an identifier: \(String(cString: PQerrorMessage(conn)))")
        }
        defer { PQfreemem(escaped) }
        return String(cString: escaped)
    }

    private func consume(_ result: OpaquePointer?, conn: OpaquePointer, sql: String) throws -> PGRows {
        guard let result else { throw connectionError(conn, sql: sql) }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        switch status {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            let rowCount = Int(PQntuples(result))
            let columnCount = Int(PQnfields(result))
            var columns: [String] = []
            var types: [UInt32] = []
            for column in 0..<columnCount {
                columns.append(String(cString: PQfname(result, Int32(column))))
                types.append(UInt32(PQftype(result, Int32(column))))
            }
            var cells: [[String?]] = []
            cells.reserveCapacity(rowCount)
            for row in 0..<rowCount {
                var values: [String?] = []
                values.reserveCapacity(columnCount)
                for column in 0..<columnCount {
                    if PQgetisnull(result, Int32(row), Int32(column)) == 1 {
                        values.append(nil)
                    } else {
                        let length = Int(PQgetlength(result, Int32(row), Int32(column)))
                        let pointer = PQgetvalue(result, Int32(row), Int32(column))
                        values.append(
                            String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self))
                    }
                }
                cells.append(values)
            }
            let affected = Int(String(cString: PQcmdTuples(result))) ?? 0
            return PGRows(columns: columns, columnTypes: types, cells: cells, affectedRows: affected)
        default:
            var error = PGError.fromResult(result, query: sql)
            if PQstatus(conn) != CONNECTION_OK { error.kind = .connectionLost }
            throw error
        }
    }

    private func connectionError(_ conn: OpaquePointer, sql: String) -> PGError {
        let message = String(cString: PQerrorMessage(conn)).trimmingTrailingNewlines()
        let lost = PQstatus(conn) != CONNECTION_OK
        return PGError(lost ? .connectionLost : .badResponse, message.isEmpty ? "no result from server" : message, query: sql)
    }

    private func drain(_ conn: OpaquePointer) {
        while let result = PQgetResult(conn) { PQclear(result) }
    }
}

/// Holds the `PGcancel` handle; `PQcancel` is thread-safe and is called from a cancellation handler,
/// which may run on any thread, so the handle is guarded by a mutex.
final class QueryCanceller: Sendable {
    private struct Handle: @unchecked Sendable { var pointer: OpaquePointer? }
    private let handle = Mutex(Handle(pointer: nil))

    func set(_ pointer: OpaquePointer?) {
        handle.withLock { state in
            if let old = state.pointer { PQfreeCancel(old) }
            state.pointer = pointer
        }
    }

    func cancel() {
        handle.withLock { state in
            guard let pointer = state.pointer else { return }
            var buffer = [CChar](repeating: 0, count: 256)
            _ = PQcancel(pointer, &buffer, Int32(buffer.count))
        }
    }
}

/// Forwards server notices (NOTICE, WARNING) to the logger instead of libpq's default stderr print.
final class NoticeSink: Sendable {
    let logger: Logger
    init(logger: Logger) { self.logger = logger }
}

private let noticeReceiver: PQnoticeReceiver = { argument, result in
    guard let argument, let result else { return }
    // The result is borrowed from libpq: read it, never PQclear it.
    let sink = Unmanaged<NoticeSink>.fromOpaque(argument).takeUnretainedValue()
    let message = String(cString: PQresultErrorMessage(result)).trimmingTrailingNewlines()
    sink.logger.debug("server notice", metadata: ["db.notice": "\(message)"])
}
