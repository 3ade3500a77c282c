import EngineTestSupport
import Foundation
import LibPQ
import Mustache
import PostmanSimulator
import RetryCore
import RetryJob
import RetryJournal
import RetrySettings
import SampleData
import Testing

@testable import RetryReport

/// Reports of real runs: the engine against a real PostgreSQL and the simulator over HTTP, then the
/// four files read back and checked against the journal.
@Suite(.serialized) struct RetryReportTests {
    /// A run with every outcome the sample data and two application writes can produce.
    @Test func countsInAllFourFilesAgreeWithTheJournal() async throws {
        let fixture = try await ReportFixture.make()
        let succeeding = fixture.data.rows.filter { $0.kind == .retrySucceeds }.map(\.messageId)
        try await fixture.applicationTouches(succeeding[0], when: .afterSelection)
        try await fixture.applicationTouches(succeeding[1], when: .afterAccepted)
        let result = try await fixture.run()
        #expect(result.exitStatus == .completed)
        let journal = try await RunSummary.load(db: fixture.db, runId: result.runId)
        let c = journal.counts
        // The run really has every outcome (otherwise this test would prove less than it claims).
        for (name, n) in [
            ("succeeded", c.succeeded), ("failed", c.failed), ("pending", c.pending), ("exhausted", c.exhausted),
            ("not_found", c.notFound), ("reconciled", c.reconciled), ("batch_not_retryable", c.batchNotRetryable),
            ("conflict", c.conflict), ("write conflicts", journal.writeConflicts)
        ] {
            #expect(n > 0, "the sample run has no \(name)")
        }
        for reason in SkipReason.allCases { #expect((c.skippedByReason[reason.rawValue] ?? 0) > 0, "no \(reason) skip") }

        let files = try await fixture.writeReport(runId: result.runId)

        // summary.json: the contract's counts, exactly as the journal has them, and they add up.
        let decoded = try JSONDecoder().decode(RunSummary.Counts.self, from: JSONSerialization.data(withJSONObject: files.counts))
        #expect(decoded == c)
        #expect(c.selected == c.retried + c.exhausted + c.notFound + c.reconciled + c.batchNotRetryable + c.rejected + c.conflict)
        #expect(c.retried == c.succeeded + c.failed + c.pending)
        #expect(files.json["run_id"] as? String == String(result.runId))
        #expect(files.json["status"] as? String == "completed")
        #expect(try files.schemaProblems() == [], "summary.json follows docs/summary.schema.json")
        let failedByCode = files.json["failed_by_code"] as? [String: Int] ?? [:]
        #expect(failedByCode.values.reduce(0, +) == c.failed)
        let campaigns = files.json["campaigns"] as? [[String: Any]] ?? []
        #expect(campaigns.map { $0["selected"] as? Int ?? 0 }.reduce(0, +) == c.selected)
        #expect(campaigns.map { $0["succeeded"] as? Int ?? 0 }.reduce(0, +) == c.succeeded)
        #expect(campaigns.map { $0["skipped"] as? Int ?? 0 }.reduce(0, +) == c.skipped)
        let apiCalls = files.json["api_calls"] as? [String: Int] ?? [:]
        let ledger = await fixture.sim.ledger()
        #expect((apiCalls["retry"] ?? 0) + (apiCalls["poll"] ?? 0) == ledger.requests.count)
        // The per-second timeline adds up to the call counts, and never exceeds a campaign's limit.
        let rates = files.json["rates"] as? [[String: Any]] ?? []
        #expect(rates.map { $0["requests"] as? Int ?? 0 }.reduce(0, +) == ledger.requests.count)
        for rate in rates {
            #expect((rate["peak_per_second"] as? Int ?? 99) <= (rate["rate_limit"] as? Int ?? 0))
        }
        let cost = files.json["cost"] as? [String: Any] ?? [:]
        let billed = (cost["local_messages"] as? Int ?? 0) + (cost["foreign_messages"] as? Int ?? 0)
        #expect(billed + (cost["not_charged_messages"] as? Int ?? 0) == c.retried)
        #expect((cost["foreign_messages"] as? Int ?? 0) == fixture.data.rows.filter { $0.kind == .foreignSentToTelco }.count)

        // failures.csv: one row per message that needs a person, by category, matching the journal.
        let header = files.csv.first ?? []
        let rows = files.csv.dropFirst()
        #expect(rows.allSatisfy { $0.count == header.count })
        func category(_ name: String) -> Int { rows.filter { $0.first == name }.count }
        #expect(category("exhausted") == c.exhausted)
        #expect(category("not_found") == c.notFound)
        #expect(category("conflict") == c.conflict)
        #expect(category("write_conflict") == journal.writeConflicts)
        #expect(category("failed_again") + category("permanent_error") == c.failed)
        #expect(category("malformed") == c.skippedByReason["malformed"])
        let ids = rows.map { $0[2] }.filter { !$0.isEmpty }
        #expect(Set(ids).count == ids.count, "one row per message")
        #expect(rows.contains { $0[0] == "write_conflict" && $0[2] == succeeding[1] })
        #expect(rows.contains { $0[0] == "conflict" && $0[2] == succeeding[0] })
        #expect(files.json["needs_attention"] as? Int == rows.count)

        // summary.html: the key tiles and the campaign table show the same numbers.
        for (value, caption) in [
            (c.selected, "selected for retry"), (c.retried, "retried"), (c.failed, "failed again"),
            (c.pending, "pending"), (rows.count, "need a person")
        ] {
            #expect(files.html.contains("<div class=\"value\">\(value)</div><div class=\"label\">\(caption)"), "\(caption)")
        }
        for campaign in journal.campaigns {
            let cells = [campaign.selected, campaign.succeeded, campaign.failed, campaign.pending, campaign.exhausted]
                .map { "<td class=\"num\">\($0)</td>" }.joined()
            #expect(files.html.contains("\(campaign.campaignId)</bdi></td>\(cells)"), "\(campaign.campaignId) row")
        }
        // summary.md: the headline sentence and the campaign rows.
        #expect(
            files.markdown.contains(
                "**\(c.retried) retried of \(c.selected) selected: \(c.succeeded) succeeded, \(c.failed) failed again, \(c.pending) pending.**"
            ))
        #expect(files.markdown.contains("Needs a person: \(rows.count)"))
        for campaign in journal.campaigns {
            #expect(
                files.markdown.contains(
                    "| \(campaign.campaignId) | \(campaign.selected) | \(campaign.succeeded) | \(campaign.failed) |"))
        }
        #expect(files.markdown.split(separator: "\n").count < 40, "short enough to paste into a ticket")

        // No full phone number anywhere: neither with its country code nor without.
        for row in fixture.data.rows {
            for file in files.all {
                #expect(!file.contains(row.recipient) && !file.contains(String(row.recipient.dropFirst(2))), "\(row.recipient)")
            }
        }
        #expect(rows.contains { $0[5].contains("****") })
        await fixture.stop()
    }

    @Test func hostileStringsInTheDataAreEscapedInEveryFile() async throws {
        // Campaign (and so message and batch) ids carrying markup, quotes, a formula, emoji and
        // right-to-left text including an override control.
        let hostile = "=HYPERLINK(\"x\")<script>alert('pwn')</script>|*_`[a](b) 🎉 שלום \u{202E}gnp.exe"
        let fixture = try await ReportFixture.make(campaigns: 1, messages: 18, prefix: hostile)
        let result = try await fixture.run()
        #expect(result.exitStatus == .completed)
        let files = try await fixture.writeReport(runId: result.runId)
        let campaign = fixture.data.simulator.campaigns[0].id

        // HTML: no markup from the data, and the text is still there, escaped.
        #expect(!files.html.lowercased().contains("<script"))
        #expect(files.html.contains("&lt;script&gt;alert(&#39;pwn&#39;)&lt;/script&gt;"))
        #expect(files.html.contains("=HYPERLINK(&quot;x&quot;)"))
        #expect(files.html.contains("🎉 שלום"), "emoji and right-to-left letters are kept")
        #expect(files.html.contains("<bdi class=\"id\">"), "values are isolated from the page's text direction")
        // Markdown: markup and table syntax are backslash-escaped.
        #expect(!files.markdown.replacingOccurrences(of: "\\<", with: "").contains("<script"))
        #expect(files.markdown.contains("\\<script\\>"))
        for line in files.markdown.split(separator: "\n") where line.hasPrefix("| =") || line.hasPrefix("| \\=") {
            let unescapedPipes = line.enumerated().filter { index, ch in
                ch == "|" && (index == 0 || Array(line)[index - 1] != "\\")
            }
            #expect(unescapedPipes.count == 9, "a table row keeps its 8 columns: \(line)")
        }
        // The bidi override never reaches a file meant for people.
        for text in [files.html, files.markdown] + files.csv.flatMap({ $0 }) {
            #expect(!text.contains("\u{202E}"))
        }
        // CSV: parses as RFC 4180, and no cell can start a formula.
        let rows = files.csv.dropFirst()
        #expect(!rows.isEmpty)
        for row in rows {
            for cell in row { #expect(!["=", "+", "-", "@"].contains(cell.first.map(String.init) ?? ""), "\(cell)") }
        }
        #expect(rows.contains { $0[1].hasPrefix("'=HYPERLINK(\"x\")<script>") })
        // JSON: valid, and the ids round-trip exactly (it is data for programs, not for eyes).
        let campaigns = files.json["campaigns"] as? [[String: Any]] ?? []
        #expect(campaigns.first?["campaign_id"] as? String == campaign)
        for row in fixture.data.rows {
            for file in files.all { #expect(!file.contains(row.recipient)) }
        }
        await fixture.stop()
    }

    @Test func aKilledAndResumedRunIsOneRunAndCountsEachMessageOnce() async throws {
        let fixture = try await ReportFixture.make(seed: 21)
        let binary = BinaryRunner(fixture: fixture)
        let killed = try await binary.run(
            ["run", "--poll-timeout", "3s"],
            extra: ["POSTMAN_RETRY_CRASH_AT": "after-retry-call:9", "POSTMAN_RETRY_TEST_HOOKS": "I_AM_A_TEST"])
        #expect(killed.killed, "the crash hook should have killed the first process: \(killed.stderr)")
        // The killed run's report, before it is resumed: its counts add up too, with what it had not settled
        // counted apart (CONTRACT.md section 5; `unsettled`), and the page says the run has not finished.
        let midway = fixture.directory.appendingPathComponent("midway").path
        let midwayReport = try await binary.run(["report", "--output", midway])
        #expect(midwayReport.status == 0, "\(midwayReport.stderr)")
        let unfinished = try ReportFixture.Files(directory: URL(fileURLWithPath: midway))
        let problems = try unfinished.schemaProblems()
        #expect(problems == [], "\(problems)")
        let counts = try #require(unfinished.json["counts"] as? [String: Any])
        func n(_ key: String) -> Int { counts[key] as? Int ?? 0 }
        #expect(n("unsettled") > 0 && unfinished.json["status"] as? String != "completed", "\(counts)")
        #expect(
            n("selected") == n("retried") + n("exhausted") + n("not_found") + n("reconciled") + n("batch_not_retryable")
                + n("rejected") + n("conflict"), "\(counts)")
        #expect(unfinished.html.contains("not settled yet") && unfinished.markdown.contains("not settled yet"))
        let reportDir = fixture.directory.appendingPathComponent("from-run").path
        let resumed = try await binary.run(["run", "--poll-timeout", "3s", "--report-dir", reportDir])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stdout.contains("report: \(reportDir)/summary.html"), "run prints its report's path: \(resumed.stdout)")

        let files = try ReportFixture.Files(directory: URL(fileURLWithPath: reportDir))
        #expect(files.json["processes"] as? Int == 2)
        #expect(files.html.contains("worked by 2 processes"))
        let journalRows: Int = try await fixture.db.query(
            "SELECT count(*) AS n FROM postman_retry.journal WHERE run_id = 1 AND origin = 'selected'")[0].decode("n")
        let runs: Int = try await fixture.db.query("SELECT count(*) AS n FROM postman_retry.runs")[0].decode("n")
        #expect(runs == 1)
        #expect(files.count("selected") == journalRows)
        let eligible = fixture.data.rows.filter {
            [
                .retrySucceeds, .retryFailsAgain, .retryStuck, .foreignSentToTelco, .batchNotRetryable,
                .alreadyChangedInPostman, .unknownToPostman, .postmanAtLimit, .tableLagsPostman
            ].contains($0.kind)
        }
        #expect(files.count("selected") == eligible.count, "each message once, though two processes worked on it")
        #expect(await fixture.sim.ledger().acceptedRetries.values.allSatisfy { $0 == 1 })
        let ids = files.csv.dropFirst().map { $0[2] }.filter { !$0.isEmpty }
        #expect(Set(ids).count == ids.count)

        // `report` rewrites the same report on demand; `runs` lists the run once, as completed.
        let again = fixture.directory.appendingPathComponent("by-report").path
        let report = try await binary.run(["report", "--output", again])
        #expect(report.status == 0 && report.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == again + "/summary.html")
        let rewritten = try ReportFixture.Files(directory: URL(fileURLWithPath: again))
        #expect(rewritten.count("selected") == files.count("selected"))
        let listing = try await binary.run(["runs", "--format", "json"])
        #expect(listing.status == 0, "\(listing.stderr)")
        let history = try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [String: Any]
        let entries = history?["runs"] as? [[String: Any]] ?? []
        #expect(entries.count == 1)
        #expect(entries.first?["status"] as? String == "completed" && entries.first?["processes"] as? Int == 2)
        #expect((entries.first?["counts"] as? [String: Any])?["selected"] as? Int == eligible.count)
        let text = try await binary.run(["runs"])
        #expect(text.stdout.contains("completed (2×)"))
        await fixture.stop()
    }

    @Test func theReportComparesWithThePreviousCompletedRun() async throws {
        let fixture = try await ReportFixture.make(campaigns: 1, messages: 18)
        let first = try await fixture.run()
        // A second run: the stuck messages are carried over; nothing new is selected.
        let second = try await fixture.run()
        #expect(second.runId == first.runId + 1)
        let files = try await fixture.writeReport(runId: second.runId)
        let previous = files.json["previous_run"] as? [String: Any]
        #expect(previous?["run_id"] as? String == String(first.runId))
        #expect(try files.schemaProblems() == [])
        #expect(previous?["failed_change"] as? Int == second.summary.counts.failed - first.summary.counts.failed)
        let change = second.summary.counts.failed - first.summary.counts.failed
        let word = change > 0 ? "up by \(change)" : change < 0 ? "down by \(-change)" : "unchanged"
        #expect(files.html.contains("Failures \(word) since run \(first.runId)"))
        #expect(files.count("carried_over") == first.summary.counts.pending)
        let listing = try await RunHistory.load(db: fixture.db)
        #expect(listing.runs.map(\.runId) == [String(second.runId), String(first.runId)], "newest first")

        // The view goes to Mustache as dictionaries (MustacheTree, for speed): the same text as the
        // view's own structs, which Mustache reads by reflection, in both templates.
        let report = try await RunReport.load(db: fixture.db, runId: second.runId)
        let view = ReportView(report)
        #expect(report.attention.count > 0 && view.comparison != nil, "the report should have rows and a comparison")
        for template in [Templates.html, Templates.markdown] {
            let byReflection = try MustacheTemplate(string: template).render(view)
            let byTree = try MustacheTemplate(string: template).render(MustacheTree.make(view))
            #expect(byTree == byReflection)
            #expect(byTree.count > 500, "the template rendered next to nothing")
        }
        await fixture.stop()
    }
}

/// Runs the real `postman-retry` binary against a fixture (built by `make test` before the tests).
struct BinaryRunner {
    let fixture: ReportFixture

    static var binary: String {
        ProcessInfo.processInfo.environment["POSTMAN_RETRY_BIN"]
            ?? ReportFixture.repoRoot.appendingPathComponent(".build/debug/postman-retry").path
    }

    struct Exit {
        var status: Int32
        var killed: Bool
        var stdout: String
        var stderr: String
    }

    func run(_ arguments: [String], extra: [String: String] = [:]) async throws -> Exit {
        guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
            throw JobError(.failure, "\(Self.binary) is missing: build it first (`make test` does)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = arguments + ["--log-level", "error", "--database-url", fixture.url]
        var environment = ProcessInfo.processInfo.environment.filter { $0.key.hasPrefix("PG") || $0.key == "PATH" }
        environment.merge(fixture.keysEnvironment) { $1 }
        environment["POSTMAN_API_URL"] = fixture.sim.baseURL
        environment.merge(extra) { $1 }
        process.environment = environment
        // Reports that `run` writes by default land in the fixture's directory, not the checkout.
        try FileManager.default.createDirectory(at: fixture.directory, withIntermediateDirectories: true)
        process.currentDirectoryURL = fixture.directory
        // Output goes to files and the exit is awaited through the termination handler: blocking
        // reads would hold the few cooperative threads that the in-process simulator needs.
        let outURL = fixture.directory.appendingPathComponent("stdout-\(UUID().uuidString)")
        let errURL = fixture.directory.appendingPathComponent("stderr-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: errURL)
        var launchError: (any Error)?
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            process.terminationHandler = { _ in done.resume() }
            do { try process.run() } catch {
                launchError = error
                process.terminationHandler = nil
                done.resume()
            }
        }
        if let launchError { throw launchError }
        let stdout = (try? Data(contentsOf: outURL)) ?? Data()
        let stderr = (try? Data(contentsOf: errURL)) ?? Data()
        return Exit(
            status: process.terminationStatus, killed: process.terminationReason == .uncaughtSignal,
            stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }
}

/// A run with a whole-batch retry: its report has a line per batch call and summary.json counts it
/// under api_calls.batch_retry and lists it in batch_calls, within the schema.
@Suite(.serialized) struct WholeBatchReportTests {
    @Test func theReportShowsEachWholeBatchCall() async throws {
        let fixture = try await ReportFixture.make(campaigns: 1, messages: 8, mixed: false, seed: 73) { data in
            let campaign = data.simulator.campaigns[0].id
            data.simulator.batches = [.init(id: "outage", campaignId: campaign, status: "messages_enqueued")]
            for i in data.rows.indices {
                data.rows[i].batchId = "outage"
                data.rows[i].kind = .retrySucceeds
                data.simulator.messages[i].batchId = "outage"
                data.simulator.messages[i].outcomes = ["success"]
            }
        }
        let result = try await fixture.world.run(fixture.settings(pollTimeout: .seconds(20)))
        #expect(result.exitStatus == .completed)
        #expect(result.summary.apiCalls.batchRetry == 1 && result.summary.counts.succeeded == 8)
        let files = try await fixture.writeReport(runId: result.runId)
        #expect(try files.schemaProblems() == [], "summary.json follows docs/summary.schema.json")
        let apiCalls = files.json["api_calls"] as? [String: Int] ?? [:]
        #expect(apiCalls["batch_retry"] == 1 && apiCalls["retry"] == 0)
        let calls = files.json["batch_calls"] as? [[String: Any]] ?? []
        #expect(calls.count == 1 && calls.first?["batch_id"] as? String == "outage" && calls.first?["members"] as? Int == 8)
        #expect(files.markdown.contains("Whole-batch retry: Batch outage of campaign-1: 8 members in one call"))
        #expect(files.html.contains("8 members in one call"))
        await fixture.stop()
    }
}
