import LibPQ
import Logging

/// Plays another live run in `postman_retry.run_holders` (what a running `postman-retry run` looks like
/// to the next one): its row, and a heartbeat that keeps moving until `stop()`. The schema must be
/// migrated.
public final class OtherRunHolder: Sendable {
    private let db: PGConnection
    private let beating: Task<Void, Never>
    public let holderId: String

    private init(db: PGConnection, beating: Task<Void, Never>, holderId: String) {
        self.db = db
        self.beating = beating
        self.holderId = holderId
    }

    /// `exclusive`: a plain run (false: a `run --worker`).
    public static func start(url: String, exclusive: Bool = true, name: String = "test:other-run") async throws -> OtherRunHolder {
        let db = try await PGConnection.connect(PGConfiguration(url: url), logger: Logger(label: "other-run"))
        let holderId = "\(name)#\(UInt64.random(in: .min ... .max))"
        try await db.execute(
            """
            INSERT INTO postman_retry.run_holders (holder_id, worker_id, exclusive, expires_at)
            VALUES (\(holderId), \(name), \(exclusive), now() + interval '5 seconds')
            """)
        let beating = Task {
            while !Task.isCancelled {
                _ = try? await db.execute(
                    """
                    UPDATE postman_retry.run_holders
                    SET beats = beats + 1, heartbeat_at = now(), expires_at = now() + interval '5 seconds'
                    WHERE holder_id = \(holderId)
                    """)
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
        return OtherRunHolder(db: db, beating: beating, holderId: holderId)
    }

    /// The other run ends: its row goes, as a finished run's does.
    public func stop() async {
        beating.cancel()
        _ = await beating.value
        _ = try? await db.execute("DELETE FROM postman_retry.run_holders WHERE holder_id = \(holderId)")
        await db.close()
    }
}
