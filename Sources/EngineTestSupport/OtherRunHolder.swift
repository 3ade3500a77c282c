import LibPQ
import Logging
import RetryJournal

/// Plays another live run in the journal's `run_holders` (what a running `postman-retry run` looks like
/// to the next one): its row, and a heartbeat that keeps moving until `stop()`. The schema must be
/// migrated. The statements are the real holder's (`HolderStore`).
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
    public static func start(url: String, exclusive: Bool = true, name: String = "test:other-run") async throws -> OtherRunHolder
    {
        let db = try await PGConnection.connect(PGConfiguration(url: url), logger: Logger(label: "other-run"))
        let holderId = "\(name)#\(UInt64.random(in: .min ... .max))"
        let ttl: Duration = .seconds(5)
        try await db.withTransaction { db in
            try HolderStore.insert(db, holderId: holderId, workerId: name, exclusive: exclusive, ttl: ttl)
        }
        let beating = Task {
            while !Task.isCancelled {
                // Revived even when a stalled machine let it expire: the other run is meant to stay alive.
                _ = try? await db.withTransaction { db in
                    try HolderStore.renew(db, holderId: holderId, ttl: ttl, evenIfExpired: true)
                }
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
        return OtherRunHolder(db: db, beating: beating, holderId: holderId)
    }

    /// The other run ends: its row goes, as a finished run's does.
    public func stop() async {
        beating.cancel()
        _ = await beating.value
        let holderId = self.holderId
        _ = try? await db.withTransaction { db in try HolderStore.release(db, holderId: holderId) }
        await db.close()
    }
}
