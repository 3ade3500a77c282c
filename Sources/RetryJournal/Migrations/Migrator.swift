import LibPQ
import Logging

/// One migration file of the job's own schema.
public struct Migration: Sendable {
    public let version: Int
    public let name: String
    public let sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }
}

/// Applies the `postman_retry` schema's migrations: in one transaction, under an advisory lock, each
/// recorded with its checksum; refuses to run when an applied file has changed. Never touches the
/// agency table.
public struct Migrator: Sendable {
    public static let schema = "postman_retry"
    /// Advisory lock key for migrations ("pmrm").
    static let lockKey: Int64 = 0x706D_726D

    /// The files, in order. They live in Sources/RetryJournal/Migrations (also reachable as sql/migrations)
    /// and are compiled into the binary, so a deployed executable needs no files beside it.
    public static let all: [Migration] = [
        file(1, "V001__bookkeeping.sql", PackageResources.V001__bookkeeping_sql),
        file(2, "V002__quiet_hours.sql", PackageResources.V002__quiet_hours_sql),
        file(3, "V003__request_timeline.sql", PackageResources.V003__request_timeline_sql),
        file(4, "V004__campaign_leases.sql", PackageResources.V004__campaign_leases_sql),
        file(5, "V005__engine2_witness.sql", PackageResources.V005__engine2_witness_sql),
        file(6, "V006__whole_batch_calls.sql", PackageResources.V006__whole_batch_calls_sql),
        file(7, "V007__run_holders.sql", PackageResources.V007__run_holders_sql),
        file(8, "V008__write_refused.sql", PackageResources.V008__write_refused_sql),
        file(9, "V009__never_final_run.sql", PackageResources.V009__never_final_run_sql),
        file(10, "V010__batch_call_sent.sql", PackageResources.V010__batch_call_sent_sql),
        file(11, "V011__takeover_stamp.sql", PackageResources.V011__takeover_stamp_sql)
    ]

    private static func file(_ version: Int, _ name: String, _ bytes: [UInt8]) -> Migration {
        Migration(version: version, name: name, sql: String(decoding: bytes, as: UTF8.self))
    }

    public let migrations: [Migration]
    public init(migrations: [Migration] = Migrator.all) { self.migrations = migrations }

    public struct Report: Sendable, Equatable {
        public var applied: [String]
        public var alreadyApplied: [String]
    }

    public enum Failure: Error, CustomStringConvertible {
        case changedAfterApply(name: String)
        case unknownVersionApplied(Int)

        public var description: String {
            switch self {
            case .changedAfterApply(let name):
                return "migration \(name) was changed after it was applied; restore the original file "
                    + "(migrations are append-only: add a new file instead)"
            case .unknownVersionApplied(let version):
                return "the database has migration version \(version), which this build does not know; "
                    + "use a newer postman-retry"
            }
        }
    }

    public func migrate(_ db: PGConnection) async throws -> Report {
        let migrations = self.migrations
        return try await db.withTransaction { db in
            try db.execute("SELECT pg_advisory_xact_lock(\(Migrator.lockKey))")
            try db.execute("CREATE SCHEMA IF NOT EXISTS \(identifier: Migrator.schema)")
            try db.execute(
                """
                CREATE TABLE IF NOT EXISTS \(qualified: [Migrator.schema, "schema_migrations"]) (
                    version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())
                """)
            let rows = try db.execute(
                "SELECT version, name, checksum FROM \(qualified: [Migrator.schema, "schema_migrations"]) ORDER BY version")
            var applied: [Int: String] = [:]
            for row in rows { applied[try row.decode("version")] = try row.decode("checksum") }
            let known = Set(migrations.map(\.version))
            if let unknown = applied.keys.sorted().first(where: { !known.contains($0) }) {
                throw Failure.unknownVersionApplied(unknown)
            }
            var report = Report(applied: [], alreadyApplied: [])
            for migration in migrations {
                let checksum: String = try db.execute("SELECT md5(\(migration.sql)) AS sum")[0].decode("sum")
                if let recorded = applied[migration.version] {
                    guard recorded == checksum else { throw Failure.changedAfterApply(name: migration.name) }
                    report.alreadyApplied.append(migration.name)
                    continue
                }
                try db.executeScript(PGQuery(unsafeSQL: migration.sql))
                try db.execute(
                    """
                    INSERT INTO \(qualified: [Migrator.schema, "schema_migrations"]) (version, name, checksum)
                    VALUES (\(migration.version), \(migration.name), \(checksum))
                    """)
                report.applied.append(migration.name)
            }
            return report
        }
    }

    /// Whether every migration of this build is applied (the job refuses to run otherwise).
    public func pending(_ db: PGConnection) async throws -> [String] {
        let exists: Bool = try await db.execute(
            "SELECT to_regclass(\(Migrator.schema + ".schema_migrations")) IS NOT NULL AS present")[0].decode("present")
        guard exists else { return migrations.map(\.name) }
        let rows = try await db.execute(
            "SELECT version FROM \(qualified: [Migrator.schema, "schema_migrations"])")
        let applied = Set(try rows.map { try $0.decode("version", as: Int.self) })
        return migrations.filter { !applied.contains($0.version) }.map(\.name)
    }
}
