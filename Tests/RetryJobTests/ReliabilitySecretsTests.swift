import Dispatch
import EngineTestSupport
import Foundation
import Glibc
import LibPQ
import PostgresTestSupport
import PostmanSimulator
import RetryCore
import RetryJournal
import RetrySettings
import SampleData
import Testing

@testable import RetryJob

extension ReliabilityTests {
    // MARK: Secrets in core dumps

    /// The process that holds the keys is not dumpable (`prctl(PR_SET_DUMPABLE, 0)`): no core file,
    /// and another process of the same user can neither ptrace it nor read `/proc/<pid>/environ`. The
    /// kernel shows it: a non-dumpable process's `/proc/<pid>` files belong to root. A dumpable
    /// process of the same user with the same environment is the control: its key *can* be read.
    @Test func theProcessIsNotDumpableSoTheSameUserCannotReadItsKey() async throws {
        let secret = "sk-live-\(UUID().uuidString)"
        // A listener that never answers: the binary waits in its connect for the database, for seconds.
        let listener = try NetworkLab.HeldPort(listening: true)
        defer { listener.release() }
        // As root every /proc file belongs to root anyway: run both processes as `nobody` then.
        let user: uid_t? = getuid() == 0 ? 65534 : nil
        let expectedUid = user ?? getuid()
        let environment = ["POSTMAN_API_KEY": secret, "PATH": "/usr/bin:/bin"]
        let job = try SpawnedBinary.start(
            Binary.binary, ["run", "--database-url", "host=127.0.0.1 port=\(listener.port) connect_timeout=20"],
            environment: environment, user: user)
        let control = try SpawnedBinary.start("/bin/sleep", ["20"], environment: environment, user: user)
        defer {
            kill(job.pid, SIGKILL)
            kill(control.pid, SIGKILL)
        }

        // Running, as the expected user, and (once past its first instructions) owned by root in /proc.
        var owner: uid_t = .max
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            if Self.processName(job.pid) == "postman-retry", let uid = Self.fileOwner("/proc/\(job.pid)/environ") {
                owner = uid
                if owner == 0 { break }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(Self.processName(job.pid) == "postman-retry", "the job is still waiting for its database")
        #expect(Self.realUid(job.pid) == expectedUid)
        #expect(owner == 0, "/proc/\(job.pid) of a non-dumpable process belongs to root, not uid \(owner)")
        #expect(Self.fileOwner("/proc/\(control.pid)/environ") == expectedUid, "control: a dumpable process owns its /proc files")

        // What another process of the same user gets from each environment.
        let asUser = user.map { "/usr/bin/setpriv --reuid=\($0) --regid=\($0) --clear-groups -- " } ?? ""
        let fromJob = await ReliabilityTests.run("\(asUser)cat /proc/\(job.pid)/environ | tr '\\0' '\\n'")
        let fromControl = await ReliabilityTests.run("\(asUser)cat /proc/\(control.pid)/environ | tr '\\0' '\\n'")
        #expect(fromControl.contains(secret), "control: the key is readable from a dumpable process (\(fromControl.prefix(200)))")
        #expect(!fromJob.contains(secret), "the API key was read from the job's /proc/<pid>/environ")
        #expect(fromJob.contains("Permission denied"), "\(fromJob.prefix(200))")

        kill(job.pid, SIGKILL)
        let exit = await job.wait()
        #expect(exit.signal == SIGKILL, "the job was still running when killed: \(exit.stderr)")
        kill(control.pid, SIGKILL)
        _ = await control.wait()
        Reliability.record(
            "secrets: the job (uid \(expectedUid)) has /proc/<pid>/environ owned by uid \(owner) (0: not dumpable); the same user's read of it "
                + (fromJob.contains(secret) ? "GOT THE KEY" : "was refused") + "; the dumpable control's key "
                + (fromControl.contains(secret) ? "was readable" : "was not readable"))
    }

    static func processName(_ pid: pid_t) -> String? {
        (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func fileOwner(_ path: String) -> uid_t? {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.ownerAccountID] as? NSNumber).map { uid_t($0.uint32Value) }
    }

    static func realUid(_ pid: pid_t) -> uid_t? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") })
        else { return nil }
        return line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first.flatMap { uid_t($0) }
    }
}
