import EngineTestSupport
import Foundation
import LibPQ
import PostgresTestSupport
import PostmanSimulator
import RetryJob
import RetryJournal
import RetrySettings
import Testing

/// How agencies reach PostgreSQL (issue 14): through a transaction-pooling PgBouncer, over connections
/// that get terminated, on servers whose default is `synchronous_commit = off`. Real parts only:
/// PgBouncer from Debian's packages, started by the test in front of the throwaway cluster.
@Suite(.serialized) struct DatabaseEdgeTests {
    typealias Binary = CrashResumeTests

    /// PgBouncer on loopback in transaction mode, two server connections per database: the runs'
    /// statements are spread over shared server connections, as in production.
    struct Bouncer {
        var process: Process
        var port: Int
        var directory: URL
        func stop() { NetworkLab.stop(process) }
        /// A conninfo for `database` through the pooler.
        func conninfo(database: String) -> String { "host=127.0.0.1 port=\(port) user=postgres dbname=\(database)" }

        static func start() async throws -> Bouncer {
            try await NetworkLab.onFreePort { port in try await start(port: port) }
        }

        private static func start(port: Int) async throws -> Bouncer {
            let pgbouncer = try NetworkLab.tool("pgbouncer", package: "pgbouncer")
            let environment = ProcessInfo.processInfo.environment
            guard let host = environment["PGHOST"], let serverPort = environment["PGPORT"] else {
                throw NetworkLab.Failed(description: "PGHOST and PGPORT are not set: run the tests through `make test`")
            }
            let directory = try NetworkLab.directory("pgbouncer")
            let d = directory.path
            try "\"postgres\" \"\"\n".write(to: directory.appendingPathComponent("users.txt"), atomically: true, encoding: .utf8)
            try """
            [databases]
            * = host=\(host) port=\(serverPort)
            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = \(port)
            unix_socket_dir =
            auth_type = trust
            auth_file = \(d)/users.txt
            pool_mode = transaction
            default_pool_size = 2
            max_client_conn = 200
            logfile = \(d)/pgbouncer.log
            pidfile = \(d)/pgbouncer.pid
            ignore_startup_parameters = extra_float_digits,options

            """.write(to: directory.appendingPathComponent("pgbouncer.ini"), atomically: true, encoding: .utf8)
            var arguments = [directory.appendingPathComponent("pgbouncer.ini").path]
            // PgBouncer will not run as root; it switches to the cluster's owner instead.
            if getuid() == 0 {
                arguments = ["-u", "postgres"] + arguments
                _ = await ReliabilityTests.run("chown -R postgres \(d)")
            }
            let log = directory.appendingPathComponent("pgbouncer.out")
            let process = try NetworkLab.start(pgbouncer, arguments, log: log)
            do {
                try await NetworkLab.waitForListener(port: port, process: process, log: log)
            } catch {
                NetworkLab.stop(process)
                throw error
            }
            return Bouncer(process: process, port: port, directory: directory)
        }
    }

    static func databaseName(_ fixture: EngineFixture) -> String {
        String(fixture.url.split(separator: " ").first { $0.hasPrefix("dbname=") }!.dropFirst("dbname=".count))
    }

    @Test func throughATransactionPoolerTwoRunsAtOnceOneWorksTheOtherExits75AndTheNextRunIsNotLockedOut() async throws {
        let bouncer = try await Bouncer.start()
        defer { bouncer.stop() }
        let fixture = try await EngineFixture.make(campaigns: 2, messages: 40, mixed: false, seed: 71, staleShare: 0.3)
        let pooled = bouncer.conninfo(database: Self.databaseName(fixture))
        // Migrations through the pooler too (their lock is a transaction lock).
        let first = try Binary.launch(fixture, databaseURL: pooled)
        let second = try Binary.launch(fixture, databaseURL: pooled)
        let exits = [await Binary.wait(first.0, first.1), await Binary.wait(second.0, second.1)]
        #expect(exits.map(\.status).sorted() == [0, 75], "\(exits.map { "\($0.status): \($0.stderr.suffix(800))" })")
        #expect(exits.contains { $0.status == 75 && $0.stderr.contains("holds the lock") })
        let summary = try await Reliability.checkConverged(fixture)
        #expect(summary.counts.selected == 80)
        let runs: Int = try await fixture.db.query("SELECT count(*) AS n FROM postman_retry.runs")[0].decode("n")
        #expect(runs == 1, "the refused run touched nothing")

        // A run that ended leaves nothing behind on the pooled server connections: the next one works.
        let third = try Binary.launch(fixture, databaseURL: pooled)
        let thirdExit = await Binary.wait(third.0, third.1)
        #expect(thirdExit.status == 0, "\(thirdExit.stderr.suffix(1500))")
        let holders: Int = try await fixture.db.query("SELECT count(*) AS n FROM postman_retry.run_holders")[0].decode("n")
        #expect(holders == 0, "every run gave its hold up")
        Reliability.record(
            "PgBouncer (transaction mode, 2 server connections): two runs at once exit \(exits.map(\.status).sorted()), "
                + "the run after them \(thirdExit.status); \(summary.counts.retried) retried, 429s \(await fixture.sim.ledger().rateLimited)"
        )
        await fixture.stop()
    }

    @Test func aRunKilledThroughThePoolerIsFollowedByARerunWithinSeconds() async throws {
        let bouncer = try await Bouncer.start()
        defer { bouncer.stop() }
        let fixture = try await EngineFixture.make(campaigns: 1, messages: 40, mixed: false, seed: 72)
        let pooled = bouncer.conninfo(database: Self.databaseName(fixture))
        let (process, errors) = try Binary.launch(fixture, arguments: ["--campaign-rate", "campaign-1=4"], databaseURL: pooled)
        let sending = try await WorkerTests.eventually { await fixture.sim.ledger().requests.count >= 6 }
        #expect(sending)
        kill(process.processIdentifier, SIGKILL)
        _ = await Binary.wait(process, errors)
        // Through a pooler the dead run's server connection lives on: its hold ends by expiry (2 s), and
        // the rerun waits for that instead of exiting 75.
        let killedAt = ContinuousClock.now
        let rerun = try Binary.launch(fixture, databaseURL: pooled, logLevel: "notice")
        let rerunExit = await Binary.wait(rerun.0, rerun.1)
        #expect(rerunExit.status == 0, "\(rerunExit.stderr.suffix(1500))")
        #expect(rerunExit.stderr.contains("took the place of a run that stopped renewing its hold"))
        #expect(ContinuousClock.now - killedAt < .seconds(60))
        _ = try await Reliability.checkConverged(fixture)
        await fixture.stop()
    }

    @Test func whenTheHeartbeatConnectionIsTerminatedTheRunSendsNothingMoreWithinOneSecond() async throws {
        let fixture = try await EngineFixture.make(campaigns: 1, messages: 60, mixed: false, seed: 73)
        let (process, errors) = try Binary.launch(
            fixture, arguments: ["--campaign-rate", "campaign-1=4"], logLevel: "notice", pollTimeout: "20s")
        let sending = try await WorkerTests.eventually { await fixture.sim.ledger().requests.count >= 8 }
        #expect(sending)
        // Taken before the terminate (the last request seen could be a quarter second older at 4/s); a quarter
        // second more for the in-process ledger's stamp on a loaded machine.
        let terminatedBy = fixture.sim.secondsSinceStart
        let terminated: Int = try await fixture.db.query(
            """
            SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
            WHERE application_name = 'postman-retry heartbeat' AND datname = current_database()
            """)[0].decode("n")
        #expect(terminated == 1)
        let lastBefore = terminatedBy + 0.25
        let exit = await Binary.wait(process, errors)
        #expect(exit.status == 75, "\(exit.stderr.suffix(1500))")
        #expect(exit.stderr.contains("hold"), "\(exit.stderr.suffix(1500))")
        let late = await fixture.sim.ledger().requests.filter { $0.t > lastBefore + 1.0 }
        #expect(late.isEmpty, "requests more than 1 s after the hold's connection was lost: \(late.map(\.path))")
        // It gave its row up on the journal's connection: the rerun neither waits for it to expire nor takes
        // the run for one that was killed.
        let holders: Int = try await fixture.db.query("SELECT count(*)::int AS n FROM postman_retry.run_holders")[0].decode("n")
        #expect(holders == 0, "the stopped run left its hold's row behind")
        // The rerun finishes the work, and nothing was sent twice.
        let rerun = try Binary.launch(fixture, logLevel: "notice", pollTimeout: "20s")
        let rerunExit = await Binary.wait(rerun.0, rerun.1)
        #expect(rerunExit.status == 0, "\(rerunExit.stderr.suffix(1500))")
        #expect(!rerunExit.stderr.contains("took the place of a run"), "\(rerunExit.stderr.suffix(1500))")
        _ = try await Reliability.checkConverged(fixture)
        Reliability.record(
            "heartbeat connection terminated: exit \(exit.status), \(late.count) requests after 1 s, rerun exit \(rerunExit.status)"
        )
        await fixture.stop()
    }

    @Test func aPostgreSQLCrashRightAfterIntentsCommitLosesNoRetryOnADurableServerWithSynchronousCommitOff() async throws {
        // fsync on, synchronous_commit off as the server's default: the job's own SET LOCAL makes its
        // intents durable before any retry call goes out.
        let cluster = try await PrivateCluster.start(durable: true)
        defer { cluster.stop() }
        let fixture = try await EngineFixture.make(campaigns: 2, messages: 50, mixed: false, seed: 74, server: cluster.conninfo)
        let serverDefault: String = try await fixture.db.query("SELECT current_setting('synchronous_commit') AS s")[0].decode("s")
        #expect(serverDefault == "off")
        let (process, errors) = try Binary.launch(fixture, pollTimeout: "20s")
        // The moment the first accepted retry is on Postman's side, crash the server (no flush of
        // anything not yet on disk).
        let accepted = try await WorkerTests.eventually(timeout: .seconds(30)) {
            !(await fixture.sim.ledger().acceptedRetries.isEmpty)
        }
        #expect(accepted)
        try await cluster.restart(immediate: true)
        let exit = await Binary.wait(process, errors)
        #expect(exit.status == 75, "\(exit.stderr.suffix(1500))")
        let rerun = try Binary.launch(fixture, pollTimeout: "20s")
        let rerunExit = await Binary.wait(rerun.0, rerun.1)
        #expect(rerunExit.status == 0, "\(rerunExit.stderr.suffix(1500))")
        let db = try await PGConnection.connect(PGConfiguration(url: fixture.url), logger: EngineFixture.quietLogger)
        let summary = try await Reliability.checkConverged(fixture, db: db)
        #expect(summary.counts.retried == 100, "every retry Postman accepted is in the table, none repeated")
        Reliability.record(
            "pg_ctl restart -m immediate (fsync on, synchronous_commit off) right after the first accepted retry: exit \(exit.status), rerun exit \(rerunExit.status)"
        )
        await db.close()
        await fixture.db.close()
        await fixture.sim.stop()
    }
}
