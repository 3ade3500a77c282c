import EngineTestSupport
import Foundation
import Testing

/// Issue 14, point 8: the crash hook is a test hook. `POSTMAN_RETRY_CRASH_AT` alone does nothing (and
/// says so); only with `POSTMAN_RETRY_TEST_HOOKS=I_AM_A_TEST` beside it, in a debug build, does the
/// process kill itself, with a loud warning first.
@Suite(.serialized) struct CrashHookTests {
    @Test("POSTMAN_RETRY_CRASH_AT without POSTMAN_RETRY_TEST_HOOKS is ignored: the run completes and says the hook is ignored")
    func crashAtAloneIsIgnored() async throws {
        let fixture = try await EngineFixture.make(databasePrefix: "hook_off", campaigns: 1, messages: 6)
        for value in [nil, "yes", "1"] {
            var environment = ["POSTMAN_RETRY_CRASH_AT": "after-intent:1"]
            environment["POSTMAN_RETRY_TEST_HOOKS"] = value
            let exit = try await CrashResumeTests.runBinary(fixture, environment)
            #expect(
                !exit.killed && exit.status == 0,
                "TEST_HOOKS=\(value ?? "unset"): exit \(exit.status), killed \(exit.killed): \(exit.stderr)")
            #expect(exit.stderr.contains("POSTMAN_RETRY_CRASH_AT is ignored"), "\(exit.stderr)")
        }
        await fixture.stop()
    }

    @Test("With POSTMAN_RETRY_TEST_HOOKS=I_AM_A_TEST the hook kills the process, after a loud warning")
    func armedHookKills() async throws {
        let fixture = try await EngineFixture.make(databasePrefix: "hook_on", campaigns: 1, messages: 6)
        let exit = try await CrashResumeTests.runBinary(
            fixture, ["POSTMAN_RETRY_CRASH_AT": "after-intent:1", "POSTMAN_RETRY_TEST_HOOKS": "I_AM_A_TEST"])
        #expect(exit.killed && exit.status == SIGKILL, "exit \(exit.status): \(exit.stderr)")
        #expect(exit.stderr.contains("WARNING: TEST CRASH HOOK ARMED"), "\(exit.stderr)")
        await fixture.stop()
    }
}
