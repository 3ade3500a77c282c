import Dispatch
import Foundation
import LibPQ
import PostgresTestSupport
import RetryConfig
import RetryJob
import RetrySettings
import Testing

/// Issue 14: the job's own PostgreSQL connections. Commits are durable whatever the server's
/// `synchronous_commit`, and a refused login or a missing database is a setting error (64), not 75.
@Suite struct JobDatabaseTests {
    static func setting(_ db: PGConnection, _ name: String) async throws -> String {
        try await db.query("SELECT current_setting(\(name)) AS v").first!.decode("v")
    }

    @Test(
        "A connection opened by the job has synchronous_commit on, though the server and the database say off; the user's options stay"
    )
    func synchronousCommitOn() async throws {
        let url = try await TestDatabase.create(prefix: "synccommit")
        let name = String(url.split(separator: "=").last!)
        let admin = try await PGConnection.connect(PGConfiguration(url: "dbname=postgres"), logger: TestDatabase.logger)
        try await admin.execute("ALTER DATABASE \(identifier: name) SET synchronous_commit = off")
        await admin.close()

        // What any other client of this database gets: off.
        let plain = try await PGConnection.connect(PGConfiguration(url: url), logger: TestDatabase.logger)
        #expect(try await Self.setting(plain, "synchronous_commit") == "off")
        await plain.close()

        let job = try await JobDatabase.connect(PGConfiguration(url: url), logger: TestDatabase.logger)
        #expect(try await Self.setting(job, "synchronous_commit") == "on")
        let shown: String = try await job.query("SHOW synchronous_commit").first!.decode("synchronous_commit")
        #expect(shown == "on")
        // A transaction of the job commits with it on as well.
        let inTransaction: String = try await job.withTransaction { db in
            try db.execute("SELECT current_setting('synchronous_commit') AS v").first!.decode("v")
        }
        #expect(inTransaction == "on")
        await job.close()

        // The user's own options (here in the conninfo, as PGOPTIONS would give them) are kept,
        // even one that turns synchronous_commit off: the journal's durability wins only for that one.
        let withOptions = url + " options='-c search_path=agency,public -c statement_timeout=4321 -c synchronous_commit=off'"
        let job2 = try await JobDatabase.connect(PGConfiguration(url: withOptions), logger: TestDatabase.logger)
        #expect(try await Self.setting(job2, "search_path").replacingOccurrences(of: " ", with: "") == "agency,public")
        #expect(try await Self.setting(job2, "statement_timeout") == "4321ms")
        #expect(try await Self.setting(job2, "synchronous_commit") == "on")
        await job2.close()
    }

    /// Connects as the job would, and expects `status` with `naming` in the message.
    static func expectRefused(_ conninfo: String, _ status: RetrySettings.ExitStatus, naming: String? = nil) async {
        do {
            let db = try await JobDatabase.connect(
                PGConfiguration(url: conninfo, connectTimeoutSeconds: 2), logger: TestDatabase.logger)
            await db.close()
            Issue.record("connected: \(conninfo)")
        } catch let error as JobError {
            #expect(error.status == status, "\(conninfo): \(error)")
            if let naming { #expect(error.message.contains(naming), "\(error)") }
        } catch {
            Issue.record("\(conninfo): not a JobError: \(error)")
        }
    }

    @Test("A database or a role that does not exist: exit 64 naming it; no server there: 75")
    func refusedConnections() async throws {
        let missingDB = "no_such_db_\(UInt32.random(in: 1...999_999))"
        await Self.expectRefused("dbname=\(missingDB)", .usage, naming: missingDB)
        let missingRole = "no_such_role_\(UInt32.random(in: 1...999_999))"
        await Self.expectRefused("dbname=postgres user=\(missingRole)", .usage, naming: missingRole)
        await Self.expectRefused("host=/nonexistent-socket-dir dbname=postgres", .temporary)
    }

    /// A connection string libpq cannot use is a setting to fix (64), not a server to wait for: each of these
    /// used to print "try again later" and exit 75, which a scheduler retries for ever.
    @Test func aMalformedDatabaseURLIsAUsageError() async {
        for conninfo in [
            "postgresql://localhost:notaport/postgres", "postgresql://localhost/postgres?foo=bar",
            "postgresql://localhost/postgres?sslmode=bogus", "host=localhost bogus=1", "postgresql://[::1",
            "host=localhost port=99999", "dbname=postgres target_session_attrs=bogus", "dbname=postgres 'unterminated"
        ] {
            await Self.expectRefused(conninfo, .usage, naming: "not valid")
        }
        #expect(
            JobError.connectionFailure(PGError(.connectionFailed, "server does not support SSL, but SSL was required")).status
                == .usage)
    }

    @Test("A wrong password (a scram-sha-256 role on a cluster of the test's own): exit 64, not 75; the right one connects")
    func wrongPassword() async throws {
        let cluster = try await PasswordCluster.start()
        do {
            try await Self.checkPasswords(cluster)
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    static func checkPasswords(_ cluster: PasswordCluster) async throws {
        await expectRefused(cluster.conninfo(password: "wrong"), .usage, naming: "password authentication failed")
        let db = try await JobDatabase.connect(
            PGConfiguration(url: cluster.conninfo(password: cluster.password)), logger: TestDatabase.logger)
        #expect(try await setting(db, "synchronous_commit") == "on")
        await db.close()
    }

    @Test("SQLSTATEs 28P01, 28000, 3D000 and libpq's start-up messages are refusals; an outage is not")
    func classification() {
        for state in ["28P01", "28000", "3D000"] {
            #expect(JobError.classify(PGError(.server, "x", sqlState: SQLState(state))).status == .usage, "\(state)")
        }
        for message in [
            #"connection to server on socket "/tmp/.s.PGSQL.5432" failed: FATAL:  password authentication failed for user "job""#,
            #"connection to server at "db" (10.0.0.5), port 5432 failed: FATAL:  database "agency" does not exist"#,
            #"connection to server at "db", port 5432 failed: FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "job""#,
            #"connection to server at "db", port 5432 failed: fe_sendauth: no password supplied"#
        ] {
            #expect(JobError.connectionFailure(PGError(.connectionFailed, message)).status == .usage, "\(message)")
        }
        for message in [
            #"connection to server at "db" (10.0.0.5), port 5432 failed: Connection refused"#,
            #"connection to server at "db", port 5432 failed: timeout expired"#,
            #"connection to server at "db", port 5432 failed: FATAL:  the database system is starting up"#,
            #"connection to server at "db", port 5432 failed: FATAL:  sorry, too many clients already"#
        ] {
            #expect(JobError.connectionFailure(PGError(.connectionFailed, message)).status == .temporary, "\(message)")
        }
        #expect(JobError.classify(PGError(.connectionLost, "server closed the connection unexpectedly")).status == .temporary)
    }
}

/// A PostgreSQL cluster of one test's own whose role `job` logs in with a password (scram-sha-256);
/// the shared throwaway cluster trusts everyone, so a wrong password could not be refused there.
struct PasswordCluster {
    let directory: String
    let port: String
    let password = "right-\(UInt32.random(in: 1000...9999))"

    static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/pg-throwaway.sh").path
    }

    func conninfo(password: String) -> String { "host=\(directory) port=\(port) dbname=postgres user=job password=\(password)" }

    static func start() async throws -> PasswordCluster {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "postman-retry-pw-\(UUID().uuidString.prefix(8))"
        ).path
        let output = try await shell(["bash", script, "start", directory])
        guard let portLine = output.split(separator: "\n").first(where: { $0.hasPrefix("export PGPORT=") }) else {
            throw JobError(.failure, "pg-throwaway.sh start printed no port: \(output)")
        }
        let port = portLine.dropFirst("export PGPORT=".count).trimmingCharacters(in: CharacterSet(charactersIn: "'"))
        let cluster = PasswordCluster(directory: directory, port: port)
        let admin = try await PGConnection.connect(
            PGConfiguration(url: "host=\(directory) port=\(port) dbname=postgres user=postgres"), logger: TestDatabase.logger)
        try await admin.execute("SET password_encryption = 'scram-sha-256'")
        try await admin.execute(PGQuery(unsafeSQL: "CREATE ROLE job LOGIN PASSWORD '\(cluster.password)'"))
        // The superuser keeps trust (to stop the cluster); everyone else needs a password.
        try "local all postgres trust\nlocal all all scram-sha-256\n".write(
            toFile: directory + "/data/pg_hba.conf", atomically: false, encoding: .utf8)
        _ = try await admin.query("SELECT pg_reload_conf()")
        await admin.close()
        // The reload is asynchronous: wait until a login without the password is refused (a fixed 300 ms
        // could be too short on a loaded machine, and the tests below would then log in on trust).
        for _ in 0..<100 {
            guard
                let open = try? await PGConnection.connect(
                    PGConfiguration(url: "host=\(directory) port=\(port) dbname=postgres user=job"), logger: TestDatabase.logger)
            else { return cluster }
            await open.close()
            try await Task.sleep(for: .milliseconds(100))
        }
        throw JobError(.failure, "pg_hba.conf with scram-sha-256 did not take effect within 10 s")
    }

    func stop() async { _ = try? await Self.shell(["bash", Self.script, "stop", directory]) }

    /// Waits on a GCD thread, as the crash tests do (a wait on a cooperative thread can hang here).
    @discardableResult
    static func shell(_ arguments: [String]) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try shellBlocking(arguments) })
            }
        }
    }

    /// posix_spawn, not Foundation's Process: the server that `start` leaves running would inherit
    /// Process's exit-watching descriptor and the wait would never end; every descriptor above 2 is
    /// closed in the child, so the server holds none of this process's (another test's pipes neither).
    static func shellBlocking(_ arguments: [String]) throws -> String {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("pw-cluster-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // bash closes every descriptor above 2 before it runs the command (glibc's closefrom action
        // is not visible to Swift).
        let closeAll =
            #"for fd in $(ls /proc/$$/fd); do if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi; done 2>/dev/null; exec "$@""#
        let argv = (["/usr/bin/env", "bash", "-c", closeAll, "close-fds"] + arguments).map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, "/usr/bin/env", &actions, nil, argv, environ)
        guard spawned == 0 else { throw JobError(.failure, "posix_spawn failed: \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        let exited = (status & 0x7f) == 0 && ((status >> 8) & 0xff) == 0
        guard exited else { throw JobError(.failure, "\(arguments.joined(separator: " ")) failed (status \(status)): \(text)") }
        return text
    }
}
