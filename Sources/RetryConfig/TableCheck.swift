import Foundation
import LibPQ
import RetrySettings

/// `config check` against a live database: the mapped table and columns exist, their types fit what
/// the job reads and writes, and the indexes the job reads through are there (or the statements to add
/// them are printed): the selection's partial index, and one on the message id.
public struct TableCheck: Sendable {
    public struct Result: Sendable {
        public var problems: [String] = []
        public var notes: [String] = []
        /// What will work but read the whole table for want of an index (`plan` and `run` log these).
        public var slowPaths: [String] = []
        /// The `CREATE INDEX` statements to run: for the selection, and for the message id.
        public var suggestedIndexes: [String] = []
        public var ok: Bool { problems.isEmpty }
    }

    /// The column types each mapped column may have, by PostgreSQL's `typname`.
    enum Kind: String, CaseIterable {
        case text, count, time, flag, key

        var accepted: Set<String> {
            switch self {
            case .text: return ["text", "varchar"]
            case .count: return ["int2", "int4", "int8"]
            case .time: return ["timestamptz", "timestamp"]
            case .flag: return ["bool"]
            // The key orders the keyset pagination: any type with a total order and a text form.
            case .key: return ["int2", "int4", "int8", "text", "varchar", "uuid", "numeric"]
            }
        }

        var wording: String {
            switch self {
            case .text: return "text or varchar"
            case .count: return "smallint, integer or bigint"
            case .time: return "timestamp or timestamptz"
            case .flag: return "boolean"
            case .key: return "an integer type, text, varchar, uuid or numeric"
            }
        }
    }

    public let table: AgencyTable
    public init(table: AgencyTable) { self.table = table }

    /// Each mapped column with the config key that names it and the kind it must be.
    var mappedColumns: [(key: String, column: String, kind: Kind, written: Bool)] {
        let t = table
        var columns: [(String, String, Kind, Bool)] = [
            ("key", t.key, .key, false), ("message_id", t.messageId, .text, false), ("campaign_id", t.campaignId, .text, false),
            ("recipient", t.recipient, .text, false), ("status", t.status, .text, true),
            ("retry_count", t.retryCount, .count, true),
            ("error_code", t.errorCode, .text, true), ("created_at", t.createdAt, .time, false),
            ("updated_at", t.updatedAt, .time, true)
        ]
        if let batch = t.batchId { columns.append(("batch_id", batch, .text, false)) }
        if let otp = t.isOtp { columns.append(("otp.column", otp, .flag, false)) }
        return columns
    }

    /// `checkIndex` looks for the selection's partial index too; reading index predicates takes a
    /// lock on the table, so `plan` and `run` (which only need the columns) skip it. `writes`: the job's
    /// role must be able to update the written columns too (`run`, and `config check`, its pre-flight).
    public func run(_ db: PGConnection, checkIndex: Bool = true, writes: Bool = true) async throws -> Result {
        var result = Result()
        let qualifiedName = try await quotedTable(db)
        let relation = try await db.query(
            """
            SELECT c.oid::text AS oid, c.relkind::text AS kind FROM pg_class c
            WHERE c.oid = to_regclass(\(qualifiedName))
            """)
        guard let found = relation.first else {
            result.problems.append(
                "table \(table.displayName) does not exist (or is not on the search path of this connection); "
                    + "set [table] name and schema in the config file")
            return result
        }
        let oid: String = try found.decode("oid")
        let kind: String = try found.decode("kind")
        if !["r", "p"].contains(kind) {
            result.problems.append("\(table.displayName) is not a table (relkind \(kind)); the job updates it, so it must be one")
        }

        let rows = try await db.query(
            """
            SELECT a.attname::text AS name, t.typname::text AS type, format_type(a.atttypid, a.atttypmod) AS shown,
                   a.attnotnull AS not_null, a.attgenerated::text AS generated
            FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
            WHERE a.attrelid = \(oid)::oid AND a.attnum > 0 AND NOT a.attisdropped
            """)
        var columns: [String: (type: String, shown: String, generated: Bool)] = [:]
        for row in rows {
            columns[try row.decode("name")] = (
                try row.decode("type"), try row.decode("shown"), try row.decode("generated", as: String.self) != ""
            )
        }
        for mapped in mappedColumns {
            guard let column = columns[mapped.column] else {
                let hint = suggestion(for: mapped.column, among: Array(columns.keys)).map { "; did you mean '\($0)'?" } ?? ""
                result.problems.append(
                    "[table.columns] \(mapped.key) = '\(mapped.column)': no such column in \(table.displayName)\(hint)")
                continue
            }
            if !mapped.kind.accepted.contains(column.type) {
                result.problems.append(
                    "[table.columns] \(mapped.key) = '\(mapped.column)' is \(column.shown); it must be \(mapped.kind.wording)")
            }
            if mapped.written && column.generated {
                result.problems.append(
                    "[table.columns] \(mapped.key) = '\(mapped.column)' is a generated column; the job must be able to write it")
            }
        }

        if result.problems.isEmpty {
            result.problems += try await privilegeProblems(db, relation: oid, writes: writes)
        }
        let partitioned = kind == "p"
        if result.problems.isEmpty {
            try await checkMessageIdIndex(db, relation: oid, partitioned: partitioned, quotedName: qualifiedName, into: &result)
        }
        guard checkIndex, result.problems.isEmpty else { return result }
        try await checkSelectionIndex(db, relation: oid, partitioned: partitioned, quotedName: qualifiedName, into: &result)
        return result
    }

    /// The grants the job's role lacks on the mapped columns: SELECT on each, UPDATE on those it writes.
    /// Without UPDATE a run used to send its retries (billed SMS) and then fail at the write-back, exit 1.
    private func privilegeProblems(_ db: PGConnection, relation oid: String, writes: Bool) async throws -> [String] {
        var missing: [(privilege: String, columns: [String])] = []
        for privilege in writes ? ["SELECT", "UPDATE"] : ["SELECT"] {
            let columns = mappedColumns.filter { privilege == "SELECT" || $0.written }.map(\.column)
            let lacking: [String] = try await db.query(
                """
                SELECT c AS name FROM unnest(\(columns)::text[]) c
                WHERE NOT has_column_privilege(\(oid)::oid, c, \(privilege))
                """
            ).map { try $0.decode("name") }
            if !lacking.isEmpty { missing.append((privilege, lacking)) }
        }
        let role: String = try await db.query("SELECT current_user::text AS role")[0].decode("role")
        return missing.map { grant in
            "the role \(role) may not \(grant.privilege) \(grant.columns.joined(separator: ", ")) of \(table.displayName); "
                + "GRANT \(grant.privilege) ON \(table.displayName) TO \(role) (the job \(grant.privilege == "SELECT" ? "reads" : "writes") them)"
        }
    }

    /// The selection reads `status = 'failure'` rows ordered by (created_at, key): a partial index whose first
    /// column is `created_at` and whose predicate is `status = 'failure'` serves it. On a partitioned table,
    /// each partition is looked at (an index made on the parent gives each one its own, and one made on each
    /// partition alone serves as well). Deparsing the predicates waits on a lock of the table, so only
    /// `config check` looks.
    private func checkSelectionIndex(
        _ db: PGConnection, relation oid: String, partitioned: Bool, quotedName: String, into result: inout Result
    ) async throws {
        let indexes = try await db.query(
            """
            SELECT r.relid::regclass::text AS relation, i.indexrelid::regclass::text AS name,
                   pg_get_expr(i.indpred, i.indrelid) AS predicate,
                   (SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[0]) AS first_column
            FROM \(fragment: Self.tableOrLeaves(oid, partitioned: partitioned)) r
            LEFT JOIN pg_index i ON i.indrelid = r.relid AND i.indisvalid
            ORDER BY 1, 2
            """)
        var fitting: [String: String] = [:]
        var relations: [String] = []
        for index in indexes {
            let relation: String = try index.decode("relation")
            if relations.last != relation { relations.append(relation) }
            guard fitting[relation] == nil, let name: String = try index.optional("name"),
                try index.optional("first_column") == table.createdAt,
                let predicate: String = try index.optional("predicate"), selectsFailures(predicate)
            else { continue }
            fitting[relation] = name
        }
        try await record(
            found: relations.compactMap { fitting[$0] }, missing: relations.filter { fitting[$0] == nil },
            partitioned: partitioned, serving: "the selection can read through index",
            lacking: "no partial index on (\(table.createdAt), …) WHERE \(table.status) = 'failure'",
            scanning: "the selection will scan", into: &result
        ) {
            let indexName = try await db.escapeIdentifier(String("\(table.table)_failed_idx".prefix(63)))
            let (createdAt, key) = (try await db.escapeIdentifier(table.createdAt), try await db.escapeIdentifier(table.key))
            return "\(Self.createIndex(partitioned: partitioned)) \(indexName) ON \(quotedName) (\(createdAt), \(key)) "
                + "WHERE \(try await db.escapeIdentifier(table.status)) = 'failure';"
        }
    }

    /// Whether an index predicate, as `pg_get_expr` prints it, is `status = 'failure'` (alone, or ANDed with
    /// more): `(status = 'failure'::text)`, with the column quoted when it needs to be and cast to text when
    /// it is a varchar. `status <> 'failure'` or `status = 'failure' OR …` does not serve the selection.
    func selectsFailures(_ predicate: String) -> Bool {
        let column = table.status
        let quoted = "\"" + column.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        let conjuncts = predicate.replacingOccurrences(of: "(", with: "").replacingOccurrences(of: ")", with: "")
        guard !conjuncts.contains(" OR ") else { return false }
        return conjuncts.components(separatedBy: " AND ").contains { term in
            let term = term.trimmingCharacters(in: .whitespaces)
            return [column, quoted, column + "::text", quoted + "::text"].contains { name in
                ["'failure'::text", "'failure'::character varying", "'failure'"].contains { term == "\(name) = \($0)" }
            }
        }
    }

    /// Each wave's intents and each write-back find their rows by message id: without an index every one of
    /// them reads the whole table (100 campaigns on a 2,000,000-row table: 4 times the wall time and 18 times
    /// PostgreSQL's CPU; docs/benchmarks.md). Looks for a valid B-tree or hash index whose first column is
    /// the message id, in the column's collation (a GIN, GiST or BRIN index, or another collation, does not
    /// serve `message_id = …`); on a partitioned table, on each partition (an index made on the parent
    /// gives each one its own). Reads the catalog alone: no predicate is deparsed, which would wait on a
    /// lock of the table, so `plan` and `run` look too.
    private func checkMessageIdIndex(
        _ db: PGConnection, relation oid: String, partitioned: Bool, quotedName: String, into result: inout Result
    ) async throws {
        let relations = try await db.query(
            """
            SELECT r.relid::regclass::text AS relation,
                   (SELECT i.indexrelid::regclass::text FROM pg_index i
                    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                    JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
                    WHERE i.indrelid = r.relid AND i.indisvalid AND i.indpred IS NULL AND a.attname = \(table.messageId)
                      AND am.amname IN ('btree', 'hash') AND i.indcollation[0] = a.attcollation
                    ORDER BY 1 LIMIT 1) AS index
            FROM \(fragment: Self.tableOrLeaves(oid, partitioned: partitioned)) r
            ORDER BY 1
            """)
        var missing: [String] = []
        var found: [String] = []
        for relation in relations {
            if let index: String = try relation.optional("index") {
                found.append(index)
            } else {
                missing.append(try relation.decode("relation"))
            }
        }
        try await record(
            found: found, missing: missing, partitioned: partitioned,
            serving: "intents and write-backs find their rows through index", lacking: "no index on \(table.messageId)",
            scanning: "every wave's intents and every write-back will scan", into: &result
        ) {
            let indexName = try await db.escapeIdentifier(String("\(table.table)_message_id_idx".prefix(63)))
            let messageId = try await db.escapeIdentifier(table.messageId)
            return "\(Self.createIndex(partitioned: partitioned)) \(indexName) ON \(quotedName) (\(messageId));"
        }
    }

    /// What an index check found, relation by relation (the table, or each partition): a note naming the
    /// index when every one has it; else the statement that adds it, and what will scan without it (the
    /// partitions without one named).
    private func record(
        found: [String], missing: [String], partitioned: Bool, serving: String, lacking: String, scanning: String,
        into result: inout Result, statement: () async throws -> String
    ) async throws {
        if missing.isEmpty, let first = found.first {
            let more = found.count > 1 ? " and \(found.count - 1) more, one per partition" : ""
            result.notes.append("\(serving) \(first)\(more)")
        } else if !missing.isEmpty {
            result.suggestedIndexes.append(try await statement())
            let scope = partitioned ? " in partition(s) \(missing.joined(separator: ", "))" : ""
            result.slowPaths.append("\(lacking)\(scope): \(scanning) " + (partitioned ? "them" : "the table"))
        }
    }

    /// The relations that hold the rows, as `(relid)`: the table itself, or each leaf partition of a
    /// partitioned table (the indexes that serve a query are theirs).
    static func tableOrLeaves(_ oid: String, partitioned: Bool) -> PGQuery {
        """
        (SELECT \(oid)::oid::regclass AS relid WHERE NOT \(partitioned)::boolean
         UNION ALL SELECT relid FROM pg_partition_tree(\(oid)::oid::regclass) WHERE isleaf)
        """
    }

    /// A partitioned table takes no CREATE INDEX CONCURRENTLY: on one, the statement printed blocks writes
    /// while it builds (building the index CONCURRENTLY on each partition first avoids that).
    static func createIndex(partitioned: Bool) -> String { partitioned ? "CREATE INDEX" : "CREATE INDEX CONCURRENTLY" }

    /// For `plan` and `run`: a mapping that does not fit the table is a usage error (exit 64) that
    /// names every misfit, rather than a database error half-way through the selection. Returns what will
    /// read the whole table for want of an index (for a warning in the log).
    @discardableResult
    public static func requireFit(_ table: AgencyTable, db: PGConnection, writes: Bool) async throws -> [String] {
        let result = try await TableCheck(table: table).run(db, checkIndex: false, writes: writes)
        guard result.ok else {
            throw JobError(
                .usage,
                "the table mapping does not fit \(table.displayName) (run `postman-retry config check`):\n"
                    + result.problems.map { "  - \($0)" }.joined(separator: "\n"))
        }
        return result.slowPaths.map { "\($0) (`postman-retry config check` prints the statement that adds one)" }
    }

    /// The table's quoted name: passed to `to_regclass` as a parameter, and printed in the suggested index.
    private func quotedTable(_ db: PGConnection) async throws -> String {
        var parts: [String] = []
        if let schema = table.schema { parts.append(try await db.escapeIdentifier(schema)) }
        parts.append(try await db.escapeIdentifier(table.table))
        return parts.joined(separator: ".")
    }
}
