import EngineTestSupport
import Foundation
import LibPQ
import PostmanSimulator
import RetryJob
import RetryJournal
import RetrySettings
import SampleData
import Testing

/// CONTRACT.md statements that had no test of their own, each against the real engine (or the real
/// `postman-retry` binary), a real PostgreSQL and the simulator over HTTP. The tests are grouped by theme in
/// the `ContractStatementTests+…` files; this one holds what they share.
@Suite(.serialized) struct ContractStatementTests {
    /// The environment the binary gets: libpq's `PG*` variables, PATH, the campaigns' keys and the simulator.
    static func binaryEnvironment(_ fixture: EngineFixture) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter { $0.key.hasPrefix("PG") || $0.key == "PATH" }
        environment.merge(fixture.keysEnvironment) { $1 }
        environment["POSTMAN_API_URL"] = fixture.sim.baseURL
        return environment
    }

    /// Runs `postman-retry ARGUMENTS --database-url <the fixture's database>` to its end.
    static func binary(_ fixture: EngineFixture, _ arguments: [String]) async throws -> SpawnedBinary.Exit {
        let process = try SpawnedBinary.start(
            CrashResumeTests.binary, arguments + ["--database-url", fixture.url], environment: binaryEnvironment(fixture))
        return await process.wait()
    }

    /// A fresh directory name under the temporary directory (not created).
    static func temporaryPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString.prefix(8))").path
    }

    /// The four report files of one run, as `postman-retry report` (or `run --report-dir`) wrote them.
    struct Report {
        var json: [String: Any]
        var html: String
        /// failures.csv, one dictionary per record, keyed by the header.
        var failures: [[String: String]]

        init(directory: String) throws {
            func read(_ name: String) throws -> String {
                try String(contentsOfFile: directory + "/" + name, encoding: .utf8)
            }
            json = try JSONSerialization.jsonObject(with: Data(read("summary.json").utf8)) as? [String: Any] ?? [:]
            html = try read("summary.html")
            let records = ContractStatementTests.parseCSV(try read("failures.csv"))
            let header = records.first ?? []
            failures = records.dropFirst().map { record in
                Dictionary(zip(header, record).map { ($0, $1) }, uniquingKeysWith: { first, _ in first })
            }
        }

        func failures(_ category: String) -> [[String: String]] { failures.filter { $0["category"] == category } }
        var counts: [String: Any] { json["counts"] as? [String: Any] ?? [:] }
        var apiCalls: [String: Int] { json["api_calls"] as? [String: Int] ?? [:] }
    }

    /// `postman-retry report --run ID --output DIR`, and the files it wrote.
    static func report(_ fixture: EngineFixture, runId: Int64, sourceLocation: SourceLocation = #_sourceLocation)
        async throws -> Report
    {
        let directory = temporaryPath("contract-report")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let exit = try await binary(fixture, ["report", "--run", String(runId), "--output", directory])
        #expect(exit.status == 0, "report exited \(exit.status): \(exit.stderr.suffix(2000))", sourceLocation: sourceLocation)
        return try Report(directory: directory)
    }

    /// RFC 4180 records (quoted fields, doubled quotes, CRLF or LF line ends).
    static func parseCSV(_ text: String) -> [[String]] {
        var records: [[String]] = []
        var record: [String] = []
        var field = ""
        var quoted = false
        var characters = Array(text)[...]
        while let character = characters.popFirst() {
            if quoted {
                if character == "\"" {
                    if characters.first == "\"" {
                        field.append("\"")
                        characters.removeFirst()
                    } else {
                        quoted = false
                    }
                } else {
                    field.append(character)
                }
                continue
            }
            switch character {
            case "\"": quoted = true
            case ",":
                record.append(field)
                field = ""
            case "\r\n", "\n":
                record.append(field)
                records.append(record)
                record = []
                field = ""
            case "\r": break
            default: field.append(character)
            }
        }
        if !field.isEmpty || !record.isEmpty {
            record.append(field)
            records.append(record)
        }
        return records
    }

    /// One agency row exactly as stored, with its tuple version (`xmin`): any write to it, even one that
    /// leaves the values as they were, changes this.
    static func storedRow(_ fixture: EngineFixture, _ messageId: String) async throws -> String {
        try await fixture.db.query(
            """
            SELECT t::text || ' xmin=' || t.xmin::text AS stored FROM outbound_messages t WHERE message_id = \(messageId)
            """)[0].decode("stored")
    }

    /// The run's counts add up as CONTRACT.md section 5 says, written out (not through `addsUp`).
    static func expectCountsAddUp(_ counts: RunSummary.Counts, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(
            counts.selected
                == counts.retried + counts.exhausted + counts.notFound + counts.reconciled + counts.batchNotRetryable
                + counts.rejected + counts.conflict,
            "selected does not add up: \(counts)", sourceLocation: sourceLocation)
        #expect(
            counts.retried == counts.succeeded + counts.failed + counts.pending, "retried does not add up: \(counts)",
            sourceLocation: sourceLocation)
        #expect(
            counts.skipped == counts.skippedByReason.values.reduce(0, +), "skipped does not add up: \(counts)",
            sourceLocation: sourceLocation)
    }
}
