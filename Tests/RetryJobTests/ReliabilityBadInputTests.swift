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
    // MARK: Bad input

    /// One bad row of the loose table: what is wrong, and what the job must make of it.
    struct BadRow {
        enum Expect: Equatable {
            /// Skipped as `malformed`, named in a warning by this key and field.
            case malformed(key: String, field: String)
            case skipped(SkipReason)
            /// Not `failure`, or no `created_at`: outside the selection (CONTRACT.md section 3).
            case notLookedAt
        }
        var note: String
        /// SQL expressions, in the loose table's column order after `note`.
        var values: [String]
        var expect: Expect
    }

    /// The loose table: every column nullable, loosely typed, names with spaces and capitals, an
    /// extra column the job must leave alone, no index (one on the key could not hold the 10,000-character
    /// key). In a `SQL_ASCII` database, so text can hold any bytes.
    static let looseTableSQL = """
        CREATE TABLE "Loose SMS" (
            note        text,
            "Row Key"   text,
            msg_id      text,
            campaign    varchar,
            batch       varchar,
            phone       text,
            otp         boolean,
            "State"     varchar(20000),
            tries       bigint,
            err         text,
            created     timestamptz,
            modified    timestamp
        );
        """

    static let looseConfig = """
        [table]
        name = "Loose SMS"

        [table.columns]
        key = "Row Key"
        message_id = "msg_id"
        campaign_id = "campaign"
        batch_id = "batch"
        recipient = "phone"
        status = "State"
        retry_count = "tries"
        error_code = "err"
        created_at = "created"
        updated_at = "modified"

        [otp]
        column = "otp"
        """

    /// `bytes('…hex…')` writes bytes the database takes unchecked; `long(n)` is n characters of md5 hex
    /// (hardly compressible, so PostgreSQL cannot shrink them under its index-entry limit).
    static let helpersSQL = """
        CREATE FUNCTION pg_temp.bytes(hex text) RETURNS text LANGUAGE sql
            AS $$ SELECT convert_from(decode(hex, 'hex'), 'SQL_ASCII') $$;
        CREATE FUNCTION pg_temp.long(n int) RETURNS text LANGUAGE sql
            AS $$ SELECT left(string_agg(md5(i::text), '' ORDER BY i), n) FROM generate_series(1, n / 32 + 1) i $$;
        """

    static func badRows() -> [BadRow] {
        let c = "'campaign-1'"
        let now = "now() - interval '1 hour'"
        let failure = "'failure'"
        func row(
            _ note: String, key: String? = nil, id: String? = nil, campaign: String? = nil, batch: String = "NULL",
            phone: String = "'6598765432'", otp: String = "false", state: String? = nil, tries: String = "0",
            err: String = "'recipient_unavailable'", created: String? = nil, _ expect: BadRow.Expect
        ) -> BadRow {
            BadRow(
                note: note,
                values: [
                    key ?? "'\(note)'", id ?? "'\(note)'", campaign ?? c, batch, phone, otp, state ?? failure, tries, err,
                    created ?? now, "now()"
                ],
                expect: expect)
        }
        return [
            row("bad-01", id: "NULL", .malformed(key: "bad-01", field: "message_id")),
            row("bad-02", campaign: "NULL", .malformed(key: "bad-02", field: "campaign_id")),
            row("bad-03", id: "''", .malformed(key: "bad-03", field: "message_id")),
            row("bad-04", id: "'..'", .malformed(key: "bad-04", field: "message_id")),
            row("bad-05", tries: "NULL", .malformed(key: "bad-05", field: "retry_count")),
            row("bad-06", tries: "-1", .malformed(key: "bad-06", field: "retry_count")),
            row("bad-07", tries: "-9223372036854775808", .malformed(key: "bad-07", field: "retry_count")),
            row("bad-08", otp: "NULL", .malformed(key: "bad-08", field: "is_otp")),
            row("bad-09", key: "NULL", .malformed(key: "NULL", field: "key")),
            row(
                "bad-10", key: "pg_temp.long(10000)", id: "NULL",
                .malformed(key: "(its 10,000-character key, cut)", field: "message_id")),
            row("bad-11", id: "pg_temp.long(10000)", .malformed(key: "bad-11", field: "message_id")),
            row("bad-12", campaign: "pg_temp.long(10000)", .malformed(key: "bad-12", field: "campaign_id")),
            row("bad-13", id: "pg_temp.bytes('6261642d3133ff')", .malformed(key: "bad-13", field: "message_id")),
            row("bad-14", campaign: "pg_temp.bytes('63c328')", .malformed(key: "bad-14", field: "campaign_id")),
            row("bad-15", key: "pg_temp.bytes('6261642d3135fe')", .malformed(key: "bad-15\u{FFFD}", field: "key")),
            row("bad-16", phone: "pg_temp.bytes('3635e282')", .malformed(key: "bad-16", field: "recipient")),
            row("bad-17", batch: "pg_temp.bytes('62ff')", .malformed(key: "bad-17", field: "batch_id")),
            row("bad-18", batch: "pg_temp.long(10000)", .malformed(key: "bad-18", field: "batch_id")),
            row("bad-19", tries: "2147483647", .skipped(.retryLimit)),
            row("bad-20", tries: "9223372036854775807", .skipped(.retryLimit)),
            row("bad-21", err: "''", .skipped(.unknownErrorCode)),
            row("bad-22", err: "'RECIPIENT_UNAVAILABLE'", .skipped(.unknownErrorCode)),
            row("bad-23", err: "pg_temp.bytes('7265ff')", .skipped(.unknownErrorCode)),
            row("bad-24", err: "pg_temp.long(10000)", .skipped(.unknownErrorCode)),
            row("bad-25", state: "NULL", .notLookedAt),
            row("bad-26", state: "'FAILURE'", .notLookedAt),
            row("bad-27", state: "' failure'", .notLookedAt),
            row("bad-28", state: "'ｆａｉｌｕｒｅ'", .notLookedAt),
            row("bad-29", state: "pg_temp.bytes('6661696c757265ff')", .notLookedAt),
            row("bad-30", state: "pg_temp.long(10000)", .notLookedAt),
            row("bad-31", created: "NULL", .notLookedAt)
        ]
    }

    /// Good rows with ids no reference table of ours has held: every one a real message, retried.
    static let oddIds = [
        "it's \"quoted\"", "two\nlines", "emoji 📱✅ id", "slash/../%2F?#x",
        String(repeating: "é", count: SelectionRules.maxIdBytes / 2)
    ]

    @Test func badInputInALooseConfigMappedTableIsNamedAndSkippedWhileTheGoodRowsAreRetriedAsInACleanTable() async throws {
        let messages = Reliability.full ? 100 : 6
        let started = ContinuousClock.now
        // The good rows, odd ids among them, and (to catch a wrongful send) Postman messages for the
        // bad rows whose id is usable.
        let addOdd = { (data: inout SampleData) in
            var template = data.rows[0]
            template.kind = .retrySucceeds
            for id in Self.oddIds {
                template.messageId = id
                data.rows.append(template)
                data.simulator.messages.append(Self.failedMessage(id, recipient: template.recipient))
            }
        }
        let clean = try await EngineFixture.make(campaigns: 2, messages: messages, mixed: false, seed: 50, adjust: addOdd)
        let cleanResult = try await clean.run(clean.settings(pollTimeout: .seconds(10)))
        #expect(cleanResult.exitStatus == .completed)
        let cleanTable = try await clean.table()
        await clean.stop()

        var data = SampleData.generate(campaigns: 2, messagesPerCampaign: messages, seed: 50, mixed: false)
        addOdd(&data)
        let goodIds = Set(data.rows.map(\.messageId))
        let bad = Self.badRows()
        for row in bad where !["bad-01", "bad-03", "bad-04"].contains(row.note) {
            data.simulator.messages.append(Self.failedMessage(row.note, recipient: "6598765432"))
        }
        let (db, url) = try await TestDatabase.connect(prefix: "loose", encoding: .sqlASCII)
        try await db.executeScript(PGQuery(unsafeSQL: Self.looseTableSQL))
        try await db.copyIn(
            #"COPY "Loose SMS" (note, "Row Key", msg_id, campaign, batch, phone, otp, "State", tries, err, created, modified) FROM STDIN (FORMAT csv)"#,
            rows: data.rows.enumerated().map { index, row in
                [
                    "good", String(format: "good-%05d", index), row.messageId, row.campaignId, row.batchId, row.recipient,
                    row.isOtp ? "t" : "f", row.status, String(row.retryCount), row.errorCode, PGTimestamp.format(row.createdAt),
                    PGTimestamp.format(row.createdAt)
                ]
            })
        // A NULL recipient and a NULL updated_at are odd but usable: Postman knows the recipient, and
        // compare-and-set treats NULL as a value. Those rows are retried like the others.
        try await db.execute(#"UPDATE "Loose SMS" SET phone = NULL WHERE "Row Key" = 'good-00001'"#)
        try await db.execute(#"UPDATE "Loose SMS" SET modified = NULL WHERE "Row Key" = 'good-00002'"#)
        let inserts = bad.map { row in "('" + row.note + "', " + row.values.joined(separator: ", ") + ")" }.joined(
            separator: ",\n")
        try await db.executeScript(PGQuery(unsafeSQL: Self.helpersSQL + "\nINSERT INTO \"Loose SMS\" VALUES\n" + inserts + ";"))
        _ = try await Migrator().migrate(db)
        let snapshotSQL: PGQuery =
            #"SELECT note, encode(convert_to(l::text, 'SQL_ASCII'), 'hex') AS bytes FROM "Loose SMS" l WHERE note <> 'good'"#
        let before = try await db.query(snapshotSQL).map {
            (try $0.decode("note", as: String.self), try $0.decode("bytes", as: String.self))
        }
        #expect(before.count == bad.count)

        var options = SimulatorOptions()
        options.seed = 50
        options.timeScale = 20
        let sim = try await SimulatorServer.start(data: data.simulator, options: options)
        let fixture = EngineFixture(db: db, url: url, sim: sim, data: data)
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("loose-\(UUID().uuidString.prefix(8)).toml")
            .path
        try Self.looseConfig.write(toFile: config, atomically: true, encoding: .utf8)
        let reportDir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "loose-report-\(UUID().uuidString.prefix(8))"
        ).path
        defer {
            try? FileManager.default.removeItem(atPath: config)
            try? FileManager.default.removeItem(atPath: reportDir)
        }
        var environment = ProcessInfo.processInfo.environment.filter { $0.key.hasPrefix("PG") || $0.key == "PATH" }
        environment.merge(fixture.keysEnvironment) { $1 }
        environment["POSTMAN_API_URL"] = sim.baseURL
        let process = try SpawnedBinary.start(
            Binary.binary,
            [
                "run", "--config", config, "--database-url", url, "--poll-timeout", "10s", "--log-format", "json",
                "--log-level", "info", "--report-dir", reportDir, "--format", "json"
            ],
            environment: environment)
        let exit = await process.wait()

        // CONTRACT.md section 5: malformed rows do not fail a run.
        #expect(exit.status == 0, "\(exit.stderr.suffix(2000))")

        // The good rows end exactly as in the clean table.
        var goodStates: [String: EngineFixture.RowState] = [:]
        for row in try await db.query(#"SELECT msg_id, "State" AS status, tries, err FROM "Loose SMS" WHERE note = 'good'"#) {
            goodStates[try row.decode("msg_id")] = .init(
                status: try row.decode("status"), retryCount: try row.decode("tries"), errorCode: try row.optional("err"))
        }
        #expect(goodStates.count == goodIds.count && cleanTable.count == goodIds.count)
        let differing = goodIds.sorted().filter { id in
            guard let got = goodStates[id], let want = cleanTable[id] else { return true }
            return !AgencyConfigTests.sameOutcome(got, want)
        }
        #expect(
            differing.isEmpty,
            "good rows unlike the clean table's: \(differing.map { "\($0.prefix(40)): \(goodStates[$0]?.description ?? "-") vs \(cleanTable[$0]?.description ?? "-")" })"
        )
        #expect(goodStates.values.allSatisfy { $0.retryCount == 1 }, "every good row was retried once")

        // The bad rows are byte for byte as they were.
        let after = try await db.query(snapshotSQL).map {
            (try $0.decode("note", as: String.self), try $0.decode("bytes", as: String.self))
        }
        let changed = Dictionary(uniqueKeysWithValues: before).filter { note, bytes in
            Dictionary(uniqueKeysWithValues: after)[note] != bytes
        }
        #expect(changed.isEmpty, "bad rows written: \(changed.keys.sorted())")

        // Each malformed row is named by key and field: in a warning, and in the run's record.
        let longKey: String = try await db.query(#"SELECT "Row Key" AS key FROM "Loose SMS" WHERE note = 'bad-10'"#)[0].decode(
            "key")
        #expect(longKey.count == 10_000)
        let expectedNames = Set(
            bad.compactMap { row -> String? in
                guard case .malformed(let key, let field) = row.expect else { return nil }
                return "\(row.note == "bad-10" ? Selector.keyForDisplay(longKey) : key) / \(field)"
            })
        var warned = Set<String>()
        for line in exit.stderr.split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String],
                object["message"] == "malformed row skipped", object["level"] == "warning", let key = object["row"],
                let field = object["field"]
            else { continue }
            warned.insert("\(key) / \(field)")
        }
        #expect(
            warned == expectedNames,
            "missing: \(expectedNames.subtracting(warned).sorted()); unexpected: \(warned.subtracting(expectedNames).sorted())")
        let recorded = Set(
            try await db.query("SELECT row_key, field FROM postman_retry.malformed_rows").map {
                "\(try $0.decode("row_key", as: String.self)) / \(try $0.decode("field", as: String.self))"
            })
        #expect(recorded == expectedNames)

        // The counts: every good row selected, every bad row in scope skipped for its reason, adding up.
        let summary = try await Reliability.checkConvergedLoose(fixture)
        let counts = summary.counts
        let expectedSkips = Dictionary(
            grouping: bad.compactMap { row -> String? in
                switch row.expect {
                case .malformed: return SkipReason.malformed.rawValue
                case .skipped(let reason): return reason.rawValue
                case .notLookedAt: return nil
                }
            }, by: { $0 }
        ).mapValues(\.count)
        #expect(counts.selected == goodIds.count && counts.retried == goodIds.count, "\(counts)")
        #expect(counts.skippedByReason.filter { $0.value > 0 } == expectedSkips, "\(counts.skippedByReason)")
        #expect(counts.addsUp)
        let printed = try JSONSerialization.jsonObject(with: Data(exit.stdout.utf8)) as? [String: Any]
        #expect(((printed?["counts"] as? [String: Any])?["skipped"] as? Int) == expectedSkips.values.reduce(0, +))

        // Nothing of a bad row reached Postman: every request names a good message.
        let ledger = await sim.ledger()
        #expect(Set(ledger.acceptedRetries.keys) == goodIds && ledger.acceptedRetries.values.allSatisfy { $0 == 1 })
        let strays = ledger.requests.compactMap { request -> String? in
            guard let range = request.path.range(of: "/messages/") else { return nil }
            let segment = request.path[range.upperBound...].split(separator: "/", omittingEmptySubsequences: false)[0]
            let id = segment.removingPercentEncoding ?? String(segment)
            return goodIds.contains(id) ? nil : id
        }
        #expect(strays.isEmpty, "requests for bad rows: \(strays.map { $0.prefix(40) })")

        let seconds = (ContinuousClock.now - started).seconds
        Reliability.record(
            "bad input: loose config-mapped table in a SQL_ASCII database, \(goodIds.count) good rows (\(Self.oddIds.count) with odd ids) "
                + "and \(bad.count) bad; exit \(exit.status); \(counts.retried) retried as in the clean table (\(differing.count) differ); "
                + "skipped \(counts.skippedByReason.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")); "
                + "\(warned.count) malformed rows named by key and field; \(changed.count) bad rows written; "
                + "\(ledger.requests.count) requests, \(strays.count) for bad rows; " + String(format: "%.1f s", seconds))
        await fixture.stop()
    }

    /// Hostile config values through the real binary: one clear line per key at fault, exit 64,
    /// before anything is read or sent (the database URL leads nowhere, and is never tried).
    @Test func hostileConfigValuesExit64NamingEveryKey() async throws {
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("hostile-\(UUID().uuidString.prefix(8)).toml")
            .path
        try """
        [postman]
        rate_limit = 0
        [table]
        name = ""
        [campaigns.c1]
        rate_limit = 1000000000
        [campaigns.c2]
        rate_limit = -5
        [quiet_hours]
        start = "22:00"
        end = "07:00"
        time_zone = "Nowhere/Atlantis"
        """.write(toFile: config, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: config) }
        var results: [String] = []
        for command in ["run", "plan"] {
            let process = try SpawnedBinary.start(
                Binary.binary, [command, "--config", config, "--database-url", "host=/nonexistent"],
                environment: ["PATH": "/usr/bin:/bin", "POSTMAN_API_KEY": "k"])
            let exit = await process.wait()
            #expect(exit.status == 64, "\(command): \(exit.stderr)")
            for (key, wording) in [
                ("line 2: postman.rate_limit", "must be at least 1, not 0"), ("line 4: table.name", "must not be empty"),
                ("line 6: campaigns.c1.rate_limit", "must be at most 1000"),
                ("line 8: campaigns.c2.rate_limit", "must be at least 1, not -5"),
                ("line 12: quiet_hours.time_zone", "'Nowhere/Atlantis' is not a time zone")
            ] {
                #expect(exit.stderr.contains("\(key): \(wording)"), "\(command) does not name \(key): \(exit.stderr)")
            }
            #expect(!exit.stderr.contains("PostgreSQL"), "the database was not tried")
            results.append("\(command) exit \(exit.status)")
        }
        Reliability.record(
            "hostile config (rate limits 0, -5 and 1,000,000,000, empty table name, unknown time zone): \(results.joined(separator: ", ")), every key named with its line"
        )
    }

    static func failedMessage(_ id: String, recipient: String) -> SimulatorData.Message {
        .init(
            id: id, campaignId: "campaign-1", recipient: recipient, latestStatus: "failure",
            attempts: [
                .init(
                    status: "failure", errorType: "delivery_error", errorCode: "recipient_unavailable",
                    createdAt: "2026-11-30T20:00:00+08:00")
            ],
            outcomes: ["success"])
    }

}

extension Reliability {
    /// `checkConverged` for a loose table: no retry twice, the limits kept, the run completed with
    /// counts that add up. (The reference table's retry-count check does not apply.)
    static func checkConvergedLoose(_ fixture: EngineFixture, sourceLocation: SourceLocation = #_sourceLocation) async throws
        -> RunSummary
    {
        let ledger = await fixture.sim.ledger()
        #expect(ledger.acceptedRetries.values.allSatisfy { $0 == 1 }, "retried twice", sourceLocation: sourceLocation)
        #expect(ledger.rateLimited == 0, sourceLocation: sourceLocation)
        for (campaign, busiest) in ledger.maxRequestsIn1s {
            #expect(busiest <= 10, "\(campaign): \(busiest) requests in one second", sourceLocation: sourceLocation)
        }
        let runId: Int64 = try await fixture.db.query("SELECT max(run_id) AS id FROM postman_retry.runs")[0].decode("id")
        let summary = try await RunSummary.load(db: fixture.db, runId: runId)
        #expect(summary.status == "completed" && summary.counts.addsUp, "\(summary.counts)", sourceLocation: sourceLocation)
        return summary
    }
}
