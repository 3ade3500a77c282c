import EngineTestSupport
import Foundation
import LibPQ
import Logging
import PostgresTestSupport
import PostmanSimulator
import RetryCore
import RetryJob
import RetryReport
import RetrySettings
import SampleData

/// The shared engine world (Sources/EngineTestSupport) plus a directory for the report files.
struct ReportFixture: EngineWorldFixture {
    let world: EngineWorld
    let directory: URL

    static func make(
        campaigns: Int = 2, messages: Int = 18, mixed: Bool = true, seed: UInt64 = 11, prefix: String = "campaign",
        adjust: (inout SampleData) -> Void = { _ in }
    ) async throws -> ReportFixture {
        let world = try await EngineWorld.make(
            databasePrefix: "report", campaigns: campaigns, messages: messages, mixed: mixed, seed: seed,
            campaignPrefix: prefix, adjust: adjust)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("report-test-\(UUID().uuidString)")
        return ReportFixture(world: world, directory: directory)
    }

    func settings(pollTimeout: Duration = .seconds(4)) -> RunSettings { world.settings(pollTimeout: pollTimeout) }

    func run() async throws -> RunResult { try await world.run(settings()) }

    /// Makes the agency's application change `messageId`'s row at a chosen step of the job, through a
    /// trigger on the journal: right after selection (so the retry is not sent: `conflict`), or right
    /// after the retry was accepted (so the outcome is not written back: a write conflict).
    func applicationTouches(_ messageId: String, when step: TouchStep) async throws {
        let name = "touch_\(step.rawValue)_\(abs(messageId.hashValue))"
        let event = step == .afterSelection ? "INSERT" : "UPDATE"
        let condition = step == .afterSelection ? "true" : "NEW.state = 'accepted' AND OLD.state <> 'accepted'"
        try await db.executeScript(
            PGQuery(
                unsafeSQL: """
                    CREATE FUNCTION \(name)() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN
                        IF NEW.message_id = '\(messageId)' AND \(condition) THEN
                            UPDATE public.outbound_messages SET updated_at = clock_timestamp() WHERE message_id = NEW.message_id;
                        END IF;
                        RETURN NEW;
                    END $$;
                    CREATE TRIGGER \(name) AFTER \(event) ON postman_retry.journal FOR EACH ROW EXECUTE FUNCTION \(name)();
                    """))
    }

    enum TouchStep: String {
        case afterSelection = "sel"
        case afterAccepted = "acc"
    }

    /// Writes the report of `runId` and reads the four files back.
    func writeReport(runId: Int64) async throws -> Files {
        let report = try await RunReport.load(db: db, runId: runId)
        try ReportFiles(report).write(to: directory)
        return try Files(directory: directory)
    }

    struct Files {
        var html: String
        var markdown: String
        var json: [String: Any]
        var jsonText: String
        var csv: [[String]]

        init(directory: URL) throws {
            func read(_ name: String) throws -> String {
                try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
            }
            html = try read("summary.html")
            markdown = try read("summary.md")
            jsonText = try read("summary.json")
            json = try JSONSerialization.jsonObject(with: Data(jsonText.utf8)) as? [String: Any] ?? [:]
            csv = try CSVReader.parse(read("failures.csv"))
        }

        var all: [String] { [html, markdown, jsonText, csv.map { $0.joined(separator: ",") }.joined(separator: "\n")] }
        var counts: [String: Any] { json["counts"] as? [String: Any] ?? [:] }

        /// What in summary.json does not match docs/summary.schema.json.
        func schemaProblems() throws -> [String] {
            let url = ReportFixture.repoRoot.appendingPathComponent("docs/summary.schema.json")
            let schema = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any] ?? [:]
            return SchemaValidator(root: schema).validate(json)
        }
        func count(_ key: String) -> Int? { counts[key] as? Int }
    }

    /// Removes the report files, unless REPORT_TEST_KEEP names a directory to move them to (to look at
    /// a test's report in a browser).
    func stop() async {
        await sim.stop()
        await db.close()
        if let keep = ProcessInfo.processInfo.environment["REPORT_TEST_KEEP"] {
            let target = URL(fileURLWithPath: keep).appendingPathComponent(directory.lastPathComponent)
            try? FileManager.default.createDirectory(atPath: keep, withIntermediateDirectories: true)
            try? FileManager.default.moveItem(at: directory, to: target)
        }
        try? FileManager.default.removeItem(at: directory)
    }
}

/// A strict RFC 4180 reader for the tests (quoted fields, doubled quotes, CRLF records).
enum CSVReader {
    struct Malformed: Error { var reason: String }

    static func parse(_ text: String) throws -> [[String]] {
        var records: [[String]] = []
        var record: [String] = []
        var field = ""
        var quoted = false
        var chars = Array(text)[...]
        while let ch = chars.popFirst() {
            if quoted {
                if ch == "\"" {
                    if chars.first == "\"" {
                        field.append("\"")
                        chars.removeFirst()
                    } else {
                        quoted = false
                    }
                } else {
                    field.append(ch)
                }
                continue
            }
            switch ch {
            case "\"":
                guard field.isEmpty else { throw Malformed(reason: "quote inside an unquoted field: \(field)") }
                quoted = true
            case ",":
                record.append(field)
                field = ""
            case "\r\n":
                record.append(field)
                records.append(record)
                record = []
                field = ""
            case "\n", "\r":
                throw Malformed(reason: "bare line break outside quotes")
            default:
                field.append(ch)
            }
        }
        guard !quoted else { throw Malformed(reason: "unterminated quote") }
        if !field.isEmpty || !record.isEmpty {
            record.append(field)
            records.append(record)
        }
        return records
    }
}
