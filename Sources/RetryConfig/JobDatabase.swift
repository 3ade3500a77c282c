import LibPQ
import Logging
import RetrySettings

/// How every command of the job opens its PostgreSQL connections.
public enum JobDatabase {
    /// Session settings of every connection the job opens, SET once connected (after libpq has applied
    /// the user's own `options` / PGOPTIONS, which therefore all still hold but for these):
    ///
    /// - `synchronous_commit = on`: an intent committed before its retry call went out, or a settlement
    ///   committed after it, must survive a PostgreSQL crash, whatever the server's or the database's
    ///   default (some agencies set it `off` for speed). Without it a crash could forget an intent
    ///   whose POST was sent, and the rerun would no longer know the retry happened.
    /// They are also made with `SET LOCAL` in every transaction: through a transaction-pooling PgBouncer
    /// a session setting lands on whichever server connection ran it, not on the journal's later
    /// transactions.
    public static let sessionSettings: [(name: String, value: String)] = [("synchronous_commit", "on")]

    /// Only `SET LOCAL`, in every transaction: a job transaction never waits on the client between its
    /// statements (they run back to back), so one left idle belongs to a process that vanished mid-way
    /// (a lost machine); ending it in 5 s frees the locks it held (the run's hold row among them) instead
    /// of leaving every later run to wait for TCP keepalives, for hours.
    public static let transactionOnlySettings: [(name: String, value: String)] = [("idle_in_transaction_session_timeout", "5000")]

    /// Opens a connection with the job's session settings. A refused login or a missing database
    /// throws exit 64; a server that is down or unreachable throws exit 75.
    public static func connect(_ configuration: PGConfiguration, logger: Logger) async throws -> PGConnection {
        let db: PGConnection
        do {
            var configuration = configuration
            for (name, value) in sessionSettings + transactionOnlySettings { configuration.transactionSettings[name] = value }
            db = try await PGConnection.connect(configuration, logger: logger)
        } catch let error as PGError {
            throw JobError.connectionFailure(error)
        }
        do {
            for (name, value) in sessionSettings {
                // set_config takes the name and value as parameters: nothing is spliced into SQL.
                _ = try await db.query("SELECT set_config(\(name), \(value), false)")
            }
        } catch {
            await db.close()
            throw JobError.classify(error)
        }
        return db
    }
}
