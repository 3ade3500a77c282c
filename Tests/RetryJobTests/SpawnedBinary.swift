import Dispatch
import Foundation
import Glibc
import RetrySettings

/// The real binary started with posix_spawn, stdout and stderr going to files (a pipe would need a
/// reader, and a blocked reader on one of Swift's two cooperative threads starves the in-process
/// simulator); waited for on a GCD thread.
struct SpawnedBinary {
    let pid: pid_t
    let stdoutPath: String
    let stderrPath: String

    struct Exit {
        var status: Int32
        /// The signal that ended it, if one did.
        var signal: Int32?
        var stdout: String
        var stderr: String
    }

    /// Starts `executable` with exactly `environment`. `user` (only when the tests run as root): run
    /// it as that user, through setpriv, which execs the program in place, so `pid` is the program's.
    static func start(_ executable: String, _ arguments: [String], environment: [String: String], user: uid_t? = nil) throws
        -> SpawnedBinary
    {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw JobError(.failure, "\(executable) is missing: build it first (`make test` does)")
        }
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("spawn-\(UUID().uuidString.prefix(8))").path
        let (out, err) = (base + ".out", base + ".err")
        var argv = [executable] + arguments
        if let user {
            argv = ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--clear-groups", "--"] + argv
        }
        var cArguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        var cEnvironment: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for argument in cArguments { free(argument) }
            for variable in cEnvironment { free(variable) }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var pid: pid_t = 0
        let result = posix_spawn(&pid, argv[0], &actions, nil, &cArguments, &cEnvironment)
        guard result == 0 else { throw JobError(.failure, "posix_spawn \(argv[0]) failed: errno \(result)") }
        return SpawnedBinary(pid: pid, stdoutPath: out, stderrPath: err)
    }

    func wait() async -> Exit {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                var status: Int32 = 0
                while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
                let signal = status & 0x7f
                let read = { (path: String) -> String in
                    defer { try? FileManager.default.removeItem(atPath: path) }
                    return (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
                }
                continuation.resume(
                    returning: Exit(
                        status: signal == 0 ? (status >> 8) & 0xff : 128 + signal, signal: signal == 0 ? nil : signal,
                        stdout: read(stdoutPath), stderr: read(stderrPath)))
            }
        }
    }
}
