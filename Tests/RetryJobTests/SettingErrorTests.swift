import EngineTestSupport
import Foundation
import PostmanSimulator
import RetryCore
import SampleData
import Testing

/// Issue 14: settings that waiting will not fix exit 64 before anything is sent: a key whose prefix
/// names another Postman environment than the API URL, a database or role that does not exist.
@Suite(.serialized) struct SettingErrorTests {
    static func run(
        _ fixture: EngineFixture, _ environment: [String: String], databaseURL: String? = nil
    ) async throws -> (exit: CrashResumeTests.Exit, seconds: Double) {
        let started = Date()
        let (process, errors) = try CrashResumeTests.launch(fixture, environment, databaseURL: databaseURL)
        let exit = await CrashResumeTests.wait(process, errors)
        return (exit, Date().timeIntervalSince(started))
    }

    @Test(
        "A key_live_ key with the test environment's URL, or key_test_ with production's: exit 64 before any call, naming the variable, never the key; behind any other URL keys are used as they are"
    )
    func keyPrefixMustMatchTheEnvironment() async throws {
        let fixture = try await EngineFixture.make(databasePrefix: "key_prefix", campaigns: 1, messages: 4) { data in
            // A simulator (or an agency's gateway) that takes a key that looks like Postman's test keys.
            data.simulator.campaigns[0].apiKey = "key_test_0123456789abcdef"
        }
        let campaign = fixture.data.simulator.campaigns[0].id
        let variable = apiKeyVariableName(campaignId: campaign)
        for (key, url, names) in [
            ("key_live_0123456789abcdef", "https://test.postman.gov.sg/api/v2", "postman.gov.sg/api/v2"),
            ("key_test_0123456789abcdef", "https://postman.gov.sg/api/v2/", "test.postman.gov.sg")
        ] {
            let (exit, _) = try await Self.run(fixture, [variable: key, "POSTMAN_API_URL": url])
            #expect(exit.status == 64, "exit \(exit.status): \(exit.stderr)")
            #expect(exit.stderr.contains(variable) && exit.stderr.contains(names), "\(exit.stderr)")
            #expect(!exit.stderr.contains(key) && !exit.stderr.contains("0123456789abcdef"), "the key leaked: \(exit.stderr)")
        }
        #expect(await fixture.sim.ledger().requests.isEmpty, "a call was made")
        // The simulator's URL is not Postman's: its key is used as it is, and the run works.
        let (simulated, _) = try await Self.run(fixture, [variable: "key_test_0123456789abcdef"])
        #expect(simulated.status == 0, "exit \(simulated.status): \(simulated.stderr)")
        #expect(await fixture.sim.ledger().acceptedRetries.count > 0)
        await fixture.stop()
    }

    @Test("A database that does not exist, or a role that does not exist: exit 64 (not 75); a server that is not there: 75")
    func databaseRefusals() async throws {
        let fixture = try await EngineFixture.make(databasePrefix: "db_refusal", campaigns: 1, messages: 2)
        let base = ProcessInfo.processInfo.environment
        let host = base["PGHOST"] ?? "/tmp"
        let port = base["PGPORT"] ?? "5432"
        for (url, expected) in [
            ("host=\(host) port=\(port) dbname=no_such_database_\(UInt32.random(in: 1...99999))", "does not exist"),
            ("host=\(host) port=\(port) dbname=postgres user=no_such_role_\(UInt32.random(in: 1...99999))", "does not exist")
        ] {
            let (exit, _) = try await Self.run(fixture, [:], databaseURL: url)
            #expect(exit.status == 64, "\(url): exit \(exit.status): \(exit.stderr)")
            #expect(exit.stderr.contains(expected), "\(exit.stderr)")
        }
        let (down, _) = try await Self.run(fixture, [:], databaseURL: "host=/nonexistent-socket-dir port=\(port) dbname=postgres")
        #expect(down.status == 75, "exit \(down.status): \(down.stderr)")
        await fixture.stop()
    }
}
