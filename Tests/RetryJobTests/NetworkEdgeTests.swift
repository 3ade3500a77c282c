import EngineTestSupport
import Foundation
import LibPQ
import PostmanSimulator
import RetryJob
import Testing

/// Issue 14 against real parts: the `postman-retry` binary reaches the simulator through nginx (TLS with a
/// private CA made by openssl) and tinyproxy (CONNECT), all started here.
@Suite(.serialized) struct NetworkEdgeTests {
    typealias Exit = CrashResumeTests.Exit

    static func run(
        _ fixture: EngineFixture, _ environment: [String: String], arguments: [String] = [], logLevel: String = "error",
        databaseURL: String? = nil
    ) async throws -> (exit: Exit, seconds: Double) {
        let started = Date()
        let (process, errors) = try CrashResumeTests.launch(
            fixture, environment, arguments: arguments, databaseURL: databaseURL, logLevel: logLevel, pollTimeout: "3s")
        let exit = await CrashResumeTests.wait(process, errors)
        return (exit, Date().timeIntervalSince(started))
    }

    /// The simulator's API URL as nginx fronts it on `port`.
    static func tlsURL(_ port: Int) -> String { "https://localhost:\(port)/api/v2" }

    struct Lab {
        var directory: URL
        var certificates: NetworkLab.Certificates
        var front: NetworkLab.TLSFront
        func stop() {
            front.stop()
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// A world of `messages` for one campaign, its TLS front, and (with `proxy`) a tinyproxy in front of both.
    static func world(
        _ name: String, messages: Int = 6, proxy: Bool = false, proxyUser: (String, String)? = nil
    ) async throws -> (EngineFixture, Lab, NetworkLab.Proxy?) {
        let fixture = try await EngineFixture.make(
            databasePrefix: name.replacingOccurrences(of: "-", with: "_"), campaigns: 1, messages: messages)
        let lab = try await Self.lab(fixture, name)
        guard proxy || proxyUser != nil else { return (fixture, lab, nil) }
        do {
            return (fixture, lab, try await NetworkLab.startProxy(in: lab.directory, user: proxyUser))
        } catch {
            lab.stop()
            throw error
        }
    }

    /// The run completed, retries reached the simulator, and every request went through the TLS front.
    static func expectCompletedThroughFront(_ exit: Exit, _ fixture: EngineFixture, _ lab: Lab, _ what: String = "") async {
        #expect(exit.status == 0, "\(what) exit \(exit.status): \(exit.stderr.suffix(3000))")
        let ledger = await fixture.sim.ledger()
        #expect(!ledger.acceptedRetries.isEmpty, "\(what) no retry reached the simulator through nginx")
        #expect(lab.front.requestsSeen() == ledger.requests.count, "\(what) a request bypassed the TLS front")
    }

    static func lab(_ fixture: EngineFixture, _ name: String) async throws -> Lab {
        let directory = try NetworkLab.directory(name)
        let certificates = try await NetworkLab.makeCertificates(in: directory)
        let front = try await NetworkLab.startTLSFront(upstreamPort: fixture.sim.port, certificates: certificates, in: directory)
        return Lab(directory: directory, certificates: certificates, front: front)
    }

    @Test(
        "A certificate signed by a CA the job does not trust: exit 69 at once, naming the certificate and the host; nothing sent or counted"
    )
    func untrustedCertificateStopsAtOnce() async throws {
        let (fixture, lab, _) = try await Self.world("tls-untrusted")
        defer { lab.stop() }
        let before = try await fixture.table()
        let (exit, seconds) = try await Self.run(fixture, ["POSTMAN_API_URL": Self.tlsURL(lab.front.goodPort)])
        #expect(exit.status == 69, "exit \(exit.status): \(exit.stderr)")
        #expect(seconds < 10, "took \(seconds) s")
        #expect(exit.stderr.contains("certificate"), "\(exit.stderr)")
        #expect(exit.stderr.contains("localhost"), "the message names the host: \(exit.stderr)")
        #expect(exit.stderr.contains("not trusted"), "\(exit.stderr)")
        // Nothing reached the simulator (not even through nginx), and the journal has no run.
        #expect(lab.front.requestsSeen() == 0)
        #expect(await fixture.sim.ledger().requests.isEmpty)
        let runs = try await fixture.db.query("SELECT count(*)::int AS n FROM postman_retry.runs")
        #expect(try runs.first?.decode("n") as Int? == 0, "a run was opened")
        #expect(try await fixture.table() == before, "the agency table was written")
        await fixture.stop()
    }

    @Test(
        "--ca-file, or SSL_CERT_FILE, with the private CA: the same run over TLS completes, every request through the TLS front")
    func caFileMakesItWork() async throws {
        for (name, environment, arguments) in [
            ("flag", [String: String](), true), ("SSL_CERT_FILE", ["SSL_CERT_FILE": ""], false)
        ] {
            let (fixture, lab, _) = try await Self.world("tls-cafile")
            defer { lab.stop() }
            var env = environment.mapValues { _ in lab.certificates.caFile.path }
            env["POSTMAN_API_URL"] = Self.tlsURL(lab.front.goodPort)
            let (exit, _) = try await Self.run(
                fixture, env, arguments: arguments ? ["--ca-file", lab.certificates.caFile.path] : [])
            await Self.expectCompletedThroughFront(exit, fixture, lab, name + ":")
            await fixture.stop()
        }
    }

    @Test("A trusted certificate for another host name: exit 69 at once, 'does not match', naming the host")
    func certificateForAnotherHost() async throws {
        let (fixture, lab, _) = try await Self.world("tls-wronghost")
        defer { lab.stop() }
        let (exit, seconds) = try await Self.run(
            fixture, ["POSTMAN_API_URL": Self.tlsURL(lab.front.wrongHostPort)],
            arguments: ["--ca-file", lab.certificates.caFile.path])
        #expect(exit.status == 69, "exit \(exit.status): \(exit.stderr)")
        #expect(seconds < 10, "took \(seconds) s")
        #expect(exit.stderr.contains("certificate") && exit.stderr.contains("does not match"), "\(exit.stderr)")
        #expect(exit.stderr.contains("localhost"), "\(exit.stderr)")
        #expect(await fixture.sim.ledger().requests.isEmpty)
        await fixture.stop()
    }

    @Test("HTTPS_PROXY: every request goes through tinyproxy with CONNECT, the certificate check too")
    func httpsProxy() async throws {
        let (fixture, lab, started) = try await Self.world("proxy-https", proxy: true)
        defer { lab.stop() }
        let proxy = started!
        defer { proxy.stop() }
        let target = "localhost:\(lab.front.goodPort)"

        // Untrusted through the proxy: the certificate check goes through the tunnel and stops the run.
        let (refused, seconds) = try await Self.run(
            fixture, ["POSTMAN_API_URL": Self.tlsURL(lab.front.goodPort), "HTTPS_PROXY": "http://127.0.0.1:\(proxy.port)"])
        #expect(refused.status == 69 && refused.stderr.contains("certificate"), "exit \(refused.status): \(refused.stderr)")
        #expect(seconds < 10)
        #expect(proxy.connects(to: target) == 1, "the check's CONNECT: \(proxy.logText)")
        #expect(lab.front.requestsSeen() == 0)

        let (exit, _) = try await Self.run(
            fixture, ["POSTMAN_API_URL": Self.tlsURL(lab.front.goodPort), "https_proxy": "http://127.0.0.1:\(proxy.port)"],
            arguments: ["--ca-file", lab.certificates.caFile.path])
        await Self.expectCompletedThroughFront(exit, fixture, lab)
        #expect(proxy.connects(to: target) >= 2, "the run's CONNECTs: \(proxy.logText)")
        await fixture.stop()
    }

    @Test("NO_PROXY (a comma list) naming Postman's host: the proxy sees nothing and the run works direct")
    func noProxyExemptsTheHost() async throws {
        let (fixture, lab, started) = try await Self.world("proxy-none", proxy: true)
        defer { lab.stop() }
        let proxy = started!
        defer { proxy.stop() }
        let (exit, _) = try await Self.run(
            fixture,
            [
                "POSTMAN_API_URL": Self.tlsURL(lab.front.goodPort), "HTTPS_PROXY": "http://127.0.0.1:\(proxy.port)",
                "NO_PROXY": "intranet.example, .gov.sg,localhost"
            ], arguments: ["--ca-file", lab.certificates.caFile.path])
        await Self.expectCompletedThroughFront(exit, fixture, lab)
        #expect(!proxy.logText.contains("CONNECT localhost"), "NO_PROXY ignored: \(proxy.logText)")
        await fixture.stop()
    }

    @Test("A proxy that wants credentials gets them from the URL; the password is never logged, even at debug level")
    func proxyCredentials() async throws {
        let password = "pr0xy-Secret-\(UInt32.random(in: 1000...9999))"
        let (fixture, lab, started) = try await Self.world("proxy-auth", messages: 4, proxyUser: ("agency", password))
        defer { lab.stop() }
        let proxy = started!
        defer { proxy.stop() }
        let (exit, _) = try await Self.run(
            fixture,
            [
                "POSTMAN_API_URL": Self.tlsURL(lab.front.goodPort),
                "HTTPS_PROXY": "http://agency:\(password)@127.0.0.1:\(proxy.port)"
            ],
            arguments: ["--ca-file", lab.certificates.caFile.path, "--log-format", "json"], logLevel: "debug")
        #expect(exit.status == 0, "exit \(exit.status): \(exit.stderr.suffix(2000))")
        #expect(proxy.connects(to: "localhost:\(lab.front.goodPort)") >= 2)
        #expect(!proxy.logText.contains("Proxy Authentication Required"), "\(proxy.logText)")
        #expect(!exit.stderr.contains(password), "the proxy password was logged")
        #expect(
            exit.stderr.contains("agency:*****@127.0.0.1:\(proxy.port)"),
            "the proxy is named, redacted: \(exit.stderr.prefix(3000))")
        await fixture.stop()
    }

    @Test("The config file's [postman] proxy and ca_file (relative to the file) work like the environment's")
    func configFileKeys() async throws {
        let (fixture, lab, started) = try await Self.world("proxy-config", messages: 4, proxy: true)
        defer { lab.stop() }
        let proxy = started!
        defer { proxy.stop() }
        let config = lab.directory.appendingPathComponent("postman-retry.toml")
        try """
        [postman]
        proxy = "http://127.0.0.1:\(proxy.port)"
        no_proxy = ["intranet.example"]
        ca_file = "ca.pem"
        """.write(to: config, atomically: true, encoding: .utf8)
        let (exit, _) = try await Self.run(
            fixture, ["POSTMAN_API_URL": Self.tlsURL(lab.front.goodPort), "POSTMAN_RETRY_CONFIG": config.path])
        await Self.expectCompletedThroughFront(exit, fixture, lab)
        #expect(proxy.connects(to: "localhost:\(lab.front.goodPort)") >= 2, "\(proxy.logText)")
        await fixture.stop()
    }

    @Test("An http API URL (the simulator) goes through HTTP_PROXY with CONNECT too, else through HTTPS_PROXY")
    func httpProxyForHTTP() async throws {
        let fixture = try await EngineFixture.make(databasePrefix: "proxy_http", campaigns: 1, messages: 4)
        let directory = try NetworkLab.directory("proxy-http")
        defer { try? FileManager.default.removeItem(at: directory) }
        let proxy = try await NetworkLab.startProxy(in: directory)
        defer { proxy.stop() }
        let (exit, _) = try await Self.run(fixture, ["http_proxy": "http://127.0.0.1:\(proxy.port)"])
        #expect(exit.status == 0, "exit \(exit.status): \(exit.stderr)")
        let first = proxy.connects(to: "127.0.0.1:\(fixture.sim.port)")
        #expect(first >= 1, "\(proxy.logText)")
        // CONTRACT.md section 5 names only HTTPS_PROXY: with no HTTP proxy set, the simulator is reached
        // through it (a suite that puts its plain-http simulator behind the contract's variable).
        let (second, _) = try await Self.run(fixture, ["HTTPS_PROXY": "http://127.0.0.1:\(proxy.port)"])
        #expect(second.status == 0, "exit \(second.status): \(second.stderr)")
        #expect(proxy.connects(to: "127.0.0.1:\(fixture.sim.port)") > first, "\(proxy.logText)")
        await fixture.stop()
    }
}

/// `config check --check-keys`: one read per campaign tells whether Postman accepts each key from here.
@Suite struct CredentialCheckTests {
    static func check(_ fixture: EngineFixture, keys: [String: String], arguments: [String] = []) async throws
        -> SpawnedBinary.Exit
    {
        var environment = ProcessInfo.processInfo.environment.filter { $0.key.hasPrefix("PG") || $0.key == "PATH" }
        environment.merge(keys) { $1 }
        environment["POSTMAN_API_URL"] = fixture.sim.baseURL
        return await try SpawnedBinary.start(
            CrashResumeTests.binary, ["config", "check", "--check-keys", "--database-url", fixture.url] + arguments,
            environment: environment
        ).wait()
    }

    @Test func everyCampaignOfTheTableIsAskedOnceAndARefusedKeyExits77NamingIt() async throws {
        let fixture = try await EngineFixture.make(databasePrefix: "keycheck", campaigns: 2, messages: 3)
        let good = try await Self.check(fixture, keys: fixture.keysEnvironment)
        #expect(good.status == 0, "\(good.stdout)\(good.stderr)")
        #expect(good.stdout.contains("campaign campaign-1: key accepted"), "\(good.stdout)")
        #expect(good.stdout.contains("campaign campaign-2: key accepted"), "\(good.stdout)")
        let reads = await fixture.sim.ledger().requests
        #expect(
            reads.count == 2 && reads.allSatisfy { $0.method == "GET" && $0.path.hasSuffix("/messages") }, "\(reads.map(\.path))")

        var keys = fixture.keysEnvironment
        let wrong = try #require(keys.keys.sorted().last)
        keys[wrong] = "sim-not-the-right-one"
        let refused = try await Self.check(
            fixture, keys: keys, arguments: ["--campaign", "campaign-1", "--campaign", "campaign-2"])
        #expect(refused.status == 77, "\(refused.stdout)\(refused.stderr)")
        #expect(refused.stdout.contains("campaign campaign-2: REFUSED"), "\(refused.stdout)")
        #expect(refused.stderr.contains("campaign-2") && !refused.stderr.contains("not-the-right-one"), "\(refused.stderr)")
        #expect(await fixture.sim.ledger().acceptedRetries.isEmpty, "a check never retries")
        await fixture.stop()
    }

    /// During an upgrade the new binary's check may run before `migrate`, beside an older binary's run that
    /// knows nothing of the later migration: it holds the run as that run does (exit 75 while it works),
    /// rather than reading at once into the campaign's busy second as it did with any migration pending.
    @Test func aCheckBeforeTheUpgradesMigrationStillWaitsForTheRunAtWork() async throws {
        let fixture = try await EngineFixture.make(databasePrefix: "keyupgrade", campaigns: 1, messages: 3)
        // The database as an older binary left it: V011 not applied.
        try await fixture.db.execute("DROP TRIGGER run_holder_taken_over ON postman_retry.run_holders")
        try await fixture.db.execute("DROP FUNCTION postman_retry.stamp_takeover()")
        try await fixture.db.execute("ALTER TABLE postman_retry.run_gate DROP COLUMN last_takeover_at")
        try await fixture.db.execute("DELETE FROM postman_retry.schema_migrations WHERE version = 11")
        let olderRun = try await OtherRunHolder.start(url: fixture.url)
        let refused = try await Self.check(fixture, keys: fixture.keysEnvironment)
        #expect(refused.status == 75, "\(refused.stdout)\(refused.stderr)")
        #expect(await fixture.sim.ledger().requests.isEmpty, "the check read while the older run worked")
        await olderRun.stop()
        let checked = try await Self.check(fixture, keys: fixture.keysEnvironment)
        #expect(checked.status == 0, "\(checked.stdout)\(checked.stderr)")
        #expect(checked.stdout.contains("lacks V011__takeover_stamp.sql: run `postman-retry migrate`"), "\(checked.stdout)")
        #expect(await fixture.sim.ledger().requests.count == 1)
        await fixture.stop()
    }
}
