import Foundation
import LibPQ
import Logging

/// A fresh database on the throwaway server that `make test` starts (scripts/pg-throwaway.sh), one per
/// test, so tests can run in parallel. Without that server the tests fail loudly instead of skipping.
public enum TestDatabase {
    public struct MissingServer: Error, CustomStringConvertible {
        public var description: String {
            "PGHOST is not set: run the tests through `make test`, which starts a throwaway PostgreSQL"
        }
    }

    public static var logger: Logger {
        var logger = Logger(label: "test.db")
        logger.logLevel = .warning
        return logger
    }

    /// A database's character set: UTF-8, or `SQL_ASCII` (a legacy database whose text columns
    /// hold whatever bytes were written, unchecked; its locale is C).
    public enum Encoding: Sendable { case utf8, sqlASCII }

    /// Creates an empty database and returns a conninfo string for it. `server` is a conninfo
    /// prefix (`host=… port=…`) for another cluster than the one in PGHOST.
    public static func create(prefix: String = "t", server: String = "", encoding: Encoding = .utf8) async throws -> String {
        guard ProcessInfo.processInfo.environment["PGHOST"] != nil || !server.isEmpty else { throw MissingServer() }
        let name = "\(prefix)_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: ""))"
        let admin = try await PGConnection.connect(PGConfiguration(url: "\(server) dbname=postgres"), logger: logger)
        switch encoding {
        case .utf8:
            try await admin.execute("CREATE DATABASE \(identifier: name) TEMPLATE template0 ENCODING 'UTF8'")
        case .sqlASCII:
            try await admin.execute(
                "CREATE DATABASE \(identifier: name) TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'")
        }
        await admin.close()
        return "\(server) dbname=\(name)".trimmingCharacters(in: .whitespaces)
    }

    /// A connection to a new empty database.
    public static func connect(prefix: String = "t", server: String = "", encoding: Encoding = .utf8) async throws -> (
        PGConnection, String
    ) {
        let url = try await create(prefix: prefix, server: server, encoding: encoding)
        return (try await PGConnection.connect(PGConfiguration(url: url), logger: logger), url)
    }
}
