import ArgumentParser
import Foundation
import LibPQ
import Logging
import PostmanAPI

/// Benchmarks that need the wrapper itself (the shell scripts in bench/ drive the rest).
@main
struct RetryBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry-bench",
        abstract: "Micro-benchmarks of the libpq wrapper and the Postman client, run by bench/*.sh.",
        subcommands: [WriteBack.self, FillCandidates.self, ClientCost.self])

    /// As the job does (PostmanRetryCommand): Swift concurrency's jobs on NIO's loops.
    static func main() async {
        ProcessEventLoops.configure(environment: ProcessInfo.processInfo.environment)
        await main(nil)
    }
}

/// Batched compare-and-set UPDATE of N rows through the wrapper: `unnest` arrays, one statement per chunk.
struct WriteBack: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "writeback", abstract: "Time a batched compare-and-set UPDATE through the wrapper.")

    @Option(help: "Table holding the rows (created by bench/writeback.sh).") var table = "wb_wrapper"
    @Option(help: "Rows per statement.") var chunk = 10_000

    func run() async throws {
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let db = try await PGConnection.connect(PGConfiguration(), logger: logger)
        // The new values and the snapshot each row is compared with, as the job holds them.
        let rows = try await db.query(
            "SELECT message_id, updated_at::text AS snap FROM \(identifier: table) ORDER BY message_id")
        let ids = try rows.map { try $0.decode("message_id", as: String.self) }
        let snaps = try rows.map { try $0.decode("snap", as: String.self) }
        let start = ContinuousClock.now
        var updated = 0
        var index = 0
        while index < ids.count {
            let end = min(index + chunk, ids.count)
            let chunkIds = Array(ids[index..<end])
            let chunkSnaps = Array(snaps[index..<end])
            let statuses = chunkIds.map { _ in "success" }
            let counts = chunkIds.map { _ in 1 }
            let errors: [String?] = chunkIds.map { _ in nil }
            let result = try await db.execute(
                """
                UPDATE \(identifier: table) a SET status = u.status, retry_count = u.count, error_code = u.error,
                       updated_at = clock_timestamp()
                FROM unnest(\(chunkIds)::text[], \(statuses)::text[], \(counts)::int[], \(errors)::text[],
                            \(chunkSnaps)::timestamptz[]) AS u(id, status, count, error, snap)
                WHERE a.message_id = u.id AND a.updated_at = u.snap
                """)
            updated += result.affectedRows
            index = end
        }
        let seconds = (ContinuousClock.now - start).components
        let elapsed = Double(seconds.seconds) + Double(seconds.attoseconds) / 1e18
        print(
            String(
                format: "wrapper: %d rows updated in %.3f s = %.0f rows/s (chunks of %d)", updated, elapsed,
                Double(updated) / elapsed, chunk))
        await db.close()
    }
}

/// Loads N failed candidate rows into the reference table with COPY through the wrapper.
struct FillCandidates: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fill", abstract: "COPY N failed rows into outbound_messages (for the selection benchmark).")

    @Option(help: "Rows to add.") var rows = 10_000

    func run() async throws {
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let db = try await PGConnection.connect(PGConfiguration(), logger: logger)
        let now = Date()
        var batch: [[String?]] = []
        var loaded = 0
        for i in 0..<rows {
            let created = PGTimestamp.format(now.addingTimeInterval(-Double(i % 200_000) * 0.5 - 60))
            batch.append([
                "campaign-\(i % 10 + 1)", "bench_\(i)", nil, "6590\(String(format: "%06d", i % 1_000_000))",
                i % 10 == 0 ? "t" : "f", "failure", String(i % 4), i % 7 == 0 ? "recipient_invalid" : "recipient_unavailable",
                created, created
            ])
            if batch.count == 50_000 {
                loaded += try await db.copyIn(Self.copy, rows: batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
        if !batch.isEmpty { loaded += try await db.copyIn(Self.copy, rows: batch) }
        print("loaded \(loaded) rows")
        await db.close()
    }

    static let copy = PGQuery(
        unsafeSQL: "COPY outbound_messages (campaign_id, message_id, batch_id, recipient, is_otp, status, retry_count, "
            + "error_code, created_at, updated_at) FROM STDIN (FORMAT csv)")
}
