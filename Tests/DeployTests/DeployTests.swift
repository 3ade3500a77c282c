import Foundation
import Testing

/// deploy/ checked by the real tools: systemd's own parser (`systemd-analyze verify`, `security`,
/// `calendar`, `systemd-sysusers`), yamllint, Kubernetes' published schemas (kubernetes-validate),
/// hadolint, and check_deploy.py for the values the job's contract needs. No Docker engine or cluster
/// runs here, so images and pods themselves are not started.
@Suite struct DeployTests {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let deploy = repoRoot.appendingPathComponent("deploy")
    static let checker = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("check_deploy.py")

    struct Output {
        var status: Int32
        var text: String
    }

    /// Runs `program` (looked up in PATH) and returns its exit status and stdout and stderr together.
    static func run(_ program: String, _ arguments: [String], in directory: URL? = nil) async throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [program] + arguments
        if let directory { process.currentDirectoryURL = directory }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // On a Dispatch thread: blocking the cooperative pool (one thread per core) would stall other suites.
        let data = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                continuation.resume(returning: data)
            }
        }
        let text = String(decoding: data, as: UTF8.self)
        if process.terminationStatus == 127 {
            Issue.record(
                program.hasPrefix("/")
                    ? "\(program) is missing: build it first (`make test` does)"
                    : "\(program) is not installed (.ci/run installs it): \(text)")
        }
        return Output(status: process.terminationStatus, text: text)
    }

    static func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("deploy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    /// A root directory holding the host's own system units (for the dependencies every service gets),
    /// our two units, and an executable where ExecStart looks, so `verify` checks everything it can.
    static func systemRoot() throws -> URL {
        let root = try temporaryDirectory()
        let manager = FileManager.default
        let units = ["/usr/lib/systemd/system", "/lib/systemd/system"].first { manager.fileExists(atPath: $0) }
        try manager.createDirectory(at: root.appendingPathComponent("usr/lib/systemd"), withIntermediateDirectories: true)
        try manager.copyItem(
            at: URL(fileURLWithPath: try #require(units)), to: root.appendingPathComponent("usr/lib/systemd/system"))
        let local = root.appendingPathComponent("etc/systemd/system")
        try manager.createDirectory(at: local, withIntermediateDirectories: true)
        for unit in ["postman-retry.service", "postman-retry.timer"] {
            try manager.copyItem(at: deploy.appendingPathComponent("systemd/\(unit)"), to: local.appendingPathComponent(unit))
        }
        // The metrics drop-in, where docs/operations.md installs it (verify reads drop-ins too).
        let dropIns = local.appendingPathComponent("postman-retry.service.d")
        try manager.createDirectory(at: dropIns, withIntermediateDirectories: true)
        try manager.copyItem(
            at: deploy.appendingPathComponent("systemd/metrics.conf"), to: dropIns.appendingPathComponent("metrics.conf"))
        let bin = root.appendingPathComponent("usr/local/bin")
        try manager.createDirectory(at: bin, withIntermediateDirectories: true)
        let stub = bin.appendingPathComponent("postman-retry")
        try Data("#!/bin/sh\n".utf8).write(to: stub)
        try manager.setAttributes([.posixPermissions: 0o755], ofItemAtPath: stub.path)
        return root
    }

    @Test func systemdAcceptsTheUnitsWithoutAWarning() async throws {
        let root = try Self.systemRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        // verify exits 0 on unknown keys and bad values, so any output at all is a failure.
        let verify = try await Self.run(
            "systemd-analyze", ["verify", "--root=\(root.path)", "postman-retry.service", "postman-retry.timer"])
        #expect(verify.status == 0 && verify.text.isEmpty, "\(verify.text)")

        // The same check catches a mistake, in the unit or the drop-in (so the empty output above means something).
        for (file, from, to, reported) in [
            ("postman-retry.service", "KillMode=mixed", "KillMode=mixd", "mixd"),
            ("postman-retry.service.d/metrics.conf", "ReadWritePaths=", "ReadWritePath=", "Unknown key 'ReadWritePath'")
        ] {
            let unit = root.appendingPathComponent("etc/systemd/system/\(file)")
            let original = try String(contentsOf: unit, encoding: .utf8)
            try Data(original.replacingOccurrences(of: from, with: to).utf8).write(to: unit)
            let caught = try await Self.run("systemd-analyze", ["verify", "--root=\(root.path)", "postman-retry.service"])
            #expect(caught.text.contains(reported), "\(file): \(caught.text)")
            try Data(original.utf8).write(to: unit)
        }
    }

    @Test func theServiceIsHardened() async throws {
        let output = try await Self.run(
            "systemd-analyze",
            ["security", "--offline=true", Self.deploy.appendingPathComponent("systemd/postman-retry.service").path])
        let score = output.text.firstMatch(of: /Overall exposure level for \S+: (\d+\.\d+)/).flatMap { Double($0.1) }
        // systemd rates 0-10, lower is better; <= 2 is its "OK" band. Measured 1.3 when written.
        #expect(try #require(score, "\(output.text)") <= 2.0)
    }

    @Test func theTimerFiresEveryEveningSingaporeTime() async throws {
        let timer = try String(contentsOf: Self.deploy.appendingPathComponent("systemd/postman-retry.timer"), encoding: .utf8)
        let calendar = try #require(timer.firstMatch(of: /\nOnCalendar=(.+)\n/)).1
        let output = try await Self.run("systemd-analyze", ["calendar", "--iterations=2", String(calendar)])
        #expect(output.status == 0, "\(output.text)")
        // 20:30 in Singapore (UTC+8, no daylight saving) is 12:30 UTC, one day apart.
        let elapses = output.text.matches(of: /(?:Next elapse|Iter\. #2): \w+ (\S+) 12:30:00 UTC/).map { String($0.1) }
        #expect(elapses.count == 2, "\(output.text)")
    }

    @Test func theSysusersFileCreatesTheServiceUser() async throws {
        let root = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        // Installed where the docs say, then applied to an empty root the way a package's postinst would.
        let sysusers = root.appendingPathComponent("usr/lib/sysusers.d")
        try FileManager.default.createDirectory(at: root.appendingPathComponent("etc"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: sysusers, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            at: Self.deploy.appendingPathComponent("systemd/postman-retry.sysusers"),
            to: sysusers.appendingPathComponent("postman-retry.conf"))
        let output = try await Self.run("systemd-sysusers", ["--root=\(root.path)"])
        #expect(output.status == 0, "\(output.text)")
        let passwd = try String(contentsOf: root.appendingPathComponent("etc/passwd"), encoding: .utf8)
        let service = try String(contentsOf: Self.deploy.appendingPathComponent("systemd/postman-retry.service"), encoding: .utf8)
        let user = try #require(service.firstMatch(of: /\nUser=(\S+)\n/)).1
        #expect(passwd.split(separator: "\n").contains { $0.hasPrefix("\(user):") }, "\(passwd)")
    }

    @Test func yamllintPasses() async throws {
        let output = try await Self.run("yamllint", ["--strict", "-c", ".yamllint.yaml", "."], in: Self.deploy)
        #expect(output.status == 0, "\(output.text)")
    }

    /// Against the oldest Kubernetes with every field used (podFailurePolicy is GA in 1.31) and a recent one.
    @Test(arguments: ["1.31.0", "1.35.0"])
    func theManifestsMatchKubernetesSchemas(version: String) async throws {
        let manifests = ["cronjob.yaml", "cronjob-workers.yaml", "configmap.yaml"].map {
            Self.deploy.appendingPathComponent("kubernetes/\($0)").path
        }
        let output = try await Self.run("kubernetes-validate", ["--strict", "--kubernetes-version", version] + manifests)
        #expect(output.status == 0, "\(output.text)")
        #expect(output.text.components(separatedBy: "passed for resource").count == 4, "\(output.text)")
    }

    @Test func theConfigMapHoldsAConfigTheJobAccepts() async throws {
        let manifest = try String(contentsOf: Self.deploy.appendingPathComponent("kubernetes/configmap.yaml"), encoding: .utf8)
        // The block scalar under `postman-retry.toml: |`, de-indented.
        let block = try #require(manifest.components(separatedBy: "postman-retry.toml: |\n").last)
        let toml = block.split(separator: "\n", omittingEmptySubsequences: false).map { $0.dropFirst(4) }.joined(separator: "\n")
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("postman-retry.toml")
        try Data(toml.utf8).write(to: file)
        let binary = Self.repoRoot.appendingPathComponent(".build/debug/postman-retry").path
        let output = try await Self.run(binary, ["config", "show", "--config", file.path])
        #expect(output.status == 0, "\(output.text)")
        #expect(output.text.contains("Asia/Singapore"), "\(output.text)")
    }

    @Test func theAlertRulesLoadAndFireWhenTheyShould() async throws {
        let directory = Self.deploy.appendingPathComponent("prometheus")
        let check = try await Self.run("promtool", ["check", "rules", "postman-retry.rules.yml"], in: directory)
        #expect(check.status == 0, "\(check.text)")
        let test = try await Self.run("promtool", ["test", "rules", "postman-retry.rules.test.yml"], in: directory)
        #expect(test.status == 0 && test.text.contains("SUCCESS"), "\(test.text)")
    }

    @Test func hadolintPasses() async throws {
        let output = try await Self.run("hadolint", [Self.deploy.appendingPathComponent("kubernetes/Dockerfile").path])
        #expect(output.status == 0, "\(output.text)")
    }

    @Test func theContractValuesAreInPlace() async throws {
        let output = try await Self.run("python3", [Self.checker.path, Self.repoRoot.path])
        #expect(output.status == 0, "\(output.text)")
    }

    @Test func theContractChecksCatchAMistake() async throws {
        let root = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        try FileManager.default.copyItem(at: Self.deploy, to: root.appendingPathComponent("deploy"))
        func edit(_ path: String, _ from: String, _ to: String) throws {
            let url = root.appendingPathComponent(path)
            let text = try String(contentsOf: url, encoding: .utf8)
            #expect(text.contains(from), "\(path) no longer has \(from)")
            try Data(text.replacingOccurrences(of: from, with: to).utf8).write(to: url)
        }
        try edit("deploy/kubernetes/cronjob.yaml", "concurrencyPolicy: Forbid", "concurrencyPolicy: Allow")
        try edit("deploy/systemd/postman-retry.service", "TimeoutStopSec=30s", "TimeoutStopSec=5s")
        try edit("deploy/kubernetes/Dockerfile", "USER 10001:10001", "USER root")
        let output = try await Self.run("python3", [Self.checker.path, root.path])
        #expect(output.status == 1)
        for expected in ["concurrencyPolicy Forbid", "TimeoutStopSec above 10s", "non-root user"] {
            #expect(output.text.contains(expected), "\(expected) not reported: \(output.text)")
        }
    }

    @Test func noSecretValueIsWrittenInDeploy() async throws {
        // Names of secrets and variables only: no `POSTMAN_API_KEY...=value`, no URL with a password.
        let enumerator = try #require(FileManager.default.enumerator(at: Self.deploy, includingPropertiesForKeys: nil))
        var checked = 0
        for case let url as URL in enumerator where !url.hasDirectoryPath {
            let text = try String(contentsOf: url, encoding: .utf8)
            checked += 1
            #expect(text.firstMatch(of: /POSTMAN_API_KEY\w*\s*[=:]\s*["']?\w/) == nil, "\(url.lastPathComponent)")
            #expect(text.firstMatch(of: /postgres(ql)?:\/\/[^\s\/]*:[^\s\/@]+@/) == nil, "\(url.lastPathComponent)")
        }
        #expect(checked >= 8)
    }
}
