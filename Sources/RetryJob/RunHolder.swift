import Foundation
import LibPQ
import Logging
import PostmanAPI
import RetryCore
import RetryJournal
import RetrySettings
import Synchronization

/// This process's right to work the job's runs (CONTRACT.md section 7): a plain `run` holds it alone,
/// `run --worker` processes hold it together. It is a row of the journal's `run_holders` (V007, its SQL in
/// `HolderStore`), not a session lock, so it means the same through a transaction-pooling PgBouncer or a managed proxy.
///
/// - Taking it: under the gate row's lock, rows past `expires_at` are deleted (their process died) and
///   the row is inserted unless a holder it cannot share with is there. A holder that is there but
///   whose heartbeat does not move is waited for (at most `ttl` and a little): that is a process just
///   killed, and the rerun takes its place; one whose heartbeat moves, or that ends while we wait, is
///   alive, and we exit 75.
/// - Keeping it: a heartbeat every `heartbeatInterval`. Sending stops once the last heartbeat that
///   renewed the row started `guardWindow` ago, which is shorter than `ttl`: a row that expired belongs
///   to a process that has stopped sending. A lost connection therefore stops sending within a second
///   (CONTRACT.md section 7), also one that fails silently (packets dropped: the renewal hangs rather
///   than fails, exactly as on a slow but live database, which so pauses sending until it answers).
/// - Journal writes check the row (`FOR KEY SHARE`, see `check`): a process whose row was taken away
///   can change nothing.
final class RunHolder: Sendable {
    enum Mode: Sendable {
        /// A plain run: nobody else at all.
        case exclusive
        /// A `run --worker`: other workers too, no plain run.
        case shared
    }

    /// Long enough that a busy database (a pooler's queue, a checkpoint) does not cost a live run its
    /// hold; short enough that the rerun after a kill waits only seconds. A holder cut off from the database
    /// stops handing requests to its HTTP client `guardWindow` after its last renewal, and a request handed
    /// over may reach Postman up to `RunSettings.longestSendDelay` later (5 s by default): see `extraWait`.
    static let ttl: Duration = .seconds(5)
    static let heartbeatInterval: Duration = .milliseconds(250)
    /// Under one second: the loss of the hold's connection comes after the start of the last renewal that
    /// went through on it, so sending stops within a second of the loss however the loss looks. A
    /// renewal still waiting for its answer extends nothing (until 2026-12-06 it allowed 2.5 s).
    static let guardWindow: Duration = .milliseconds(900)
    /// A holder that cannot renew for this long gives the run up (exit 75): its journal is out of reach.
    static let giveUpAfter: Duration = .seconds(10)

    let db: PGConnection
    /// Another connection (the journal's) to give the row up on when `db` has been lost: the row would
    /// otherwise make the next run wait for it to expire (5 s) and take it for a process that died.
    let fallback: PGConnection?
    let holderId: String
    let workerId: String
    let mode: Mode
    /// When the last heartbeat that renewed the row was sent (the database's `now()` is later).
    private let lastRenewal: Mutex<ContinuousClock.Instant>
    /// Why the hold was lost (the row found gone or expired, the connection lost); nil while it is held.
    private let lost = Mutex<String?>(nil)

    /// No request to Postman before this: one second after the hold was taken (the previous holder's
    /// requests have left every window). After a takeover (a holder's row deleted once expired, by this
    /// process or, recently, by another: see `takeoverWait`) also the guard window, so that the margin does
    /// not rest on the database's clock (a step of its `now()` could make a live holder's row look expired
    /// early), plus `extraWait` for the dead holder's requests that its HTTP client held back.
    let firstSendAllowed: ContinuousClock.Instant
    /// Whether the hold was taken after a takeover (`firstSendAllowed` waits the longer margin).
    let afterTakeover: Bool
    /// Whether the database has V011 (`run_gate.last_takeover_at` and its trigger). Only `config check` on
    /// a database not yet migrated takes the hold without it; every take then counts as after a takeover.
    let takeoverStamps: Bool
    /// When a request of this process last ended without an answer although it may have reached Postman.
    private let lastUnanswered = Mutex<ContinuousClock.Instant?>(nil)

    private init(
        db: PGConnection, fallback: PGConnection?, holderId: String, workerId: String, mode: Mode,
        renewedAt: ContinuousClock.Instant,
        takenBy: ContinuousClock.Instant, sendDelay: Duration, afterTakeover: Bool, takeoverStamps: Bool
    ) {
        // From when the take committed, not from when it began: a pooler's queue may hold the transaction.
        self.firstSendAllowed = takenBy + .seconds(1) + (afterTakeover ? Self.takeoverWait(sendDelay: sendDelay) : .zero)
        self.afterTakeover = afterTakeover
        self.takeoverStamps = takeoverStamps
        self.db = db
        self.fallback = fallback
        self.holderId = holderId
        self.workerId = workerId
        self.mode = mode
        self.lastRenewal = Mutex(renewedAt)
    }

    /// A holder cut off from the database hands requests over until `guardWindow` after its last renewal R,
    /// and one handed over can reach Postman up to `sendDelay` later (`RunSettings.longestSendDelay`): until
    /// R + guardWindow + sendDelay. Its row expires at R + ttl at the earliest, and the new holder's first
    /// request comes at least 1 s + guardWindow after it takes the row, so the old holder's last request is
    /// a second ahead when sendDelay <= ttl. This adds what `sendDelay` and the guard window take beyond
    /// `ttl` (0.9 s with the default 5 s `request_timeout`), which keeps the guard window's margin for the
    /// database's clock.
    static func extraWait(sendDelay: Duration) -> Duration {
        max(.zero, guardWindow + sendDelay - ttl)
    }

    /// What a take after a takeover waits beyond the contract's second: the guard window and `extraWait`
    /// (1.8 s with the default 5 s `request_timeout`). A holder that released its row itself did so after its
    /// last request had been answered or cancelled (`holding` releases after its body, and the HTTP work is
    /// structured inside it), so a take after a release waits only the second.
    static func takeoverWait(sendDelay: Duration) -> Duration {
        guardWindow + extraWait(sendDelay: sendDelay)
    }

    /// How long a takeover by any process (V011's `run_gate.last_takeover_at`, database clock) makes later
    /// takes wait the longer margin: a dead holder's requests can reach Postman until `guardWindow +
    /// sendDelay` after its last renewal, and its row was deleted no sooner than `ttl` after it, so well
    /// within `sendDelay` of the delete; the minute beyond it is for steps of the database's clock.
    static func takeoverMemory(sendDelay: Duration) -> Duration {
        sendDelay + .seconds(60)
    }

    /// What stands in the way of taking the row.
    private typealias Conflict = HolderStore.Holder

    /// A row deleted because it expired.
    private struct Expired: Sendable {
        var holderId: String
        var workerId: String
    }

    private enum Attempt: Sendable {
        case taken(expired: [Expired], afterTakeover: Bool)
        case held([Conflict], expired: [Expired])
    }

    /// Takes the row on `db` (the connection that will carry the heartbeats), or throws exit 75 when a
    /// live holder is in the way.
    static func acquire(
        db: PGConnection, workerId: String, mode: Mode, sendDelay: Duration, logger: Logger, takeoverStamps: Bool = true,
        fallback: PGConnection? = nil
    ) async throws -> RunHolder {
        let holderId = "\(workerId)#\(UInt64.random(in: .min ... .max))"
        let exclusive = mode == .exclusive
        var firstSeen: [String: Int64] = [:]
        var expiredByUs: Set<String> = []
        // A row that does not beat expires `ttl` after its last beat; the margin past it is for attempts slowed by
        // a loaded database (one took over 0.9 s in a full test run, and a 1 s margin refused a rerun with 75).
        let giveUpAt = ContinuousClock.now + ttl + .seconds(3)
        while true {
            let started = ContinuousClock.now
            let attempt = try await db.withTransaction { db -> Attempt in
                try HolderStore.lockGate(db)
                if let old = try olderBinaryHolding(db) { throw old }
                let expired = try HolderStore.deleteExpired(db).map { Expired(holderId: $0.holderId, workerId: $0.workerId) }
                let conflicts = try HolderStore.conflicting(db, exclusive: exclusive)
                guard conflicts.isEmpty else { return .held(conflicts, expired: expired) }
                // Nobody else holds anything now: a plain run frees the leases of workers that died.
                if exclusive { try HolderStore.freeCampaignLeases(db) }
                try HolderStore.insert(db, holderId: holderId, workerId: workerId, exclusive: exclusive, ttl: ttl)
                // Read after the delete above, whose trigger stamps the gate: one test covers both.
                let afterTakeover =
                    try !takeoverStamps || HolderStore.tookOverRecently(db, within: takeoverMemory(sendDelay: sendDelay))
                return .taken(expired: expired, afterTakeover: afterTakeover)
            }
            switch attempt {
            case .taken(let expired, let afterTakeover):
                for previous in expired {
                    logger.notice(
                        "took the place of a run that stopped renewing its hold (killed, or cut off from the database)",
                        metadata: ["previous": "\(previous.workerId)"])
                }
                return RunHolder(
                    db: db, fallback: fallback, holderId: holderId, workerId: workerId, mode: mode, renewedAt: started,
                    takenBy: .now,
                    sendDelay: sendDelay, afterTakeover: afterTakeover, takeoverStamps: takeoverStamps)
            case .held(let conflicts, let expired):
                expiredByUs.formUnion(expired.map(\.holderId))
                let present = Set(conflicts.map(\.workerId))
                // A holder whose heartbeat moved twice is alive (once may be the last beat of a process just
                // killed, committed after our first look); so is one that left without expiring.
                let alive = conflicts.first { conflict in firstSeen[conflict.holderId].map { conflict.beats - $0 >= 2 } ?? false }
                let leftNormally = firstSeen.keys.contains { id in
                    !conflicts.contains { $0.holderId == id } && !expiredByUs.contains(id)
                }
                if alive != nil || leftNormally || ContinuousClock.now >= giveUpAt {
                    throw refusal(conflicts, mode: mode)
                }
                for conflict in conflicts where firstSeen[conflict.holderId] == nil {
                    firstSeen[conflict.holderId] = conflict.beats
                }
                logger.debug(
                    "waiting to see whether the holder of the run is alive", metadata: ["holders": "\(present.sorted())"])
                try await LoopTimer.sleep(for: .milliseconds(150))
            }
        }
    }

    /// A postman-retry from before V007 holds its run lock as a session advisory lock, and knows nothing of
    /// `run_holders` (during an upgrade, one host may still run it): never run beside it.
    private static func olderBinaryHolding(_ db: isolated PGConnection) throws -> JobError? {
        guard let pid = try HolderStore.olderBinaryHolding(db) else { return nil }
        return JobError(
            .temporary,
            "an older postman-retry (before migration V007) holds the run lock (PostgreSQL backend \(pid)); let it finish "
                + "before this version runs (if it is a leftover on a pooled connection: SELECT pg_terminate_backend(\(pid)))")
    }

    private static func refusal(_ conflicts: [Conflict], mode: Mode) -> JobError {
        let plainRunInTheWay = conflicts.contains(where: \.exclusive)
        switch (mode, plainRunInTheWay) {
        case (.shared, _):
            return JobError(.temporary, "a plain postman-retry run holds the lock; workers start when it has finished")
        case (.exclusive, true):
            return JobError(.temporary, "another postman-retry run holds the lock; try again later")
        case (.exclusive, false):
            return JobError(
                .temporary,
                "a shared run holds the lock: \(conflicts.count) `run --worker` process(es) (\(conflicts.map(\.workerId).sorted().joined(separator: ", "))); try again later"
            )
        }
    }

    /// Renews the row. False when it is gone or has expired: another run may take (or has taken) its
    /// place, so it is never revived; this process stops (exit 75) and the next run resumes.
    @discardableResult
    func renew() async throws -> Bool {
        let started = ContinuousClock.now
        let holderId = self.holderId
        let kept = try await HolderStore.renew(on: db, holderId: holderId, ttl: Self.ttl)
        if kept {
            lastRenewal.withLock { $0 = max($0, started) }
        } else {
            lost.withLock { $0 = $0 ?? "another run took this run's place after its heartbeats stopped" }
        }
        return kept
    }

    /// Whether this process may still send: its row was renewed recently enough that nobody can have
    /// taken it, and that its connection worked less than a second ago.
    func mayStillSend() -> Bool {
        guard lost.withLock({ $0 }) == nil else { return false }
        return sinceLastRenewal < Self.guardWindow
    }

    /// Waits while sending is paused (a late heartbeat); throws exit 75 once the hold is lost.
    func waitUntilMaySend() async throws {
        while !mayStillSend() {
            if let reason = lostReason { throw JobError(.temporary, "stopped before sending more: \(reason)") }
            try await LoopTimer.sleep(for: .milliseconds(50))
        }
    }

    var sinceLastRenewal: Duration { ContinuousClock.now - lastRenewal.withLock { $0 } }

    /// Why this process lost its hold (nil while it holds it): the row was taken away, or could not be
    /// renewed for `giveUpAfter`. The run stops with exit 75 as soon as it looks.
    var lostReason: String? {
        if let reason = lost.withLock({ $0 }) { return reason }
        // A heartbeat that hangs (a pooler's queue, a lock) throws nothing: judge by the time since it worked.
        if sinceLastRenewal > Self.giveUpAfter { return "could not renew this run's hold for \(Self.giveUpAfter)" }
        return nil
    }

    /// Keeps the row alive until the task is cancelled or the hold is lost.
    func heartbeats(logger: Logger) async {
        var warned = false
        while !Task.isCancelled {
            do {
                let renewedBefore = lastRenewal.withLock { $0 }
                if try await renew() {
                    if warned { logger.notice("run hold heartbeat renewed again") }
                    warned = false
                    // Sending paused from `guardWindow` after the previous renewal until this one: say so.
                    let paused = ContinuousClock.now - renewedBefore - Self.guardWindow
                    if paused > .zero {
                        logger.notice(
                            "sending paused while the run hold's heartbeat waited for the database",
                            metadata: [
                                "paused": "\(paused.formatted(.units(allowed: [.seconds], fractionalPart: .show(length: 1))))"
                            ])
                    }
                } else {
                    logger.error("run hold taken away; stopping", metadata: ["holder": "\(workerId)"])
                    return
                }
            } catch {
                // The connection itself is gone (terminated, failover): it will not come back, and a
                // waiting run may take our place once the row expires. Stop now rather than after
                // `giveUpAfter` (which `lostReason` judges by the time since the last renewal).
                if let failure = error as? PGError,
                    failure.kind == .connectionLost
                        || [.adminShutdown, .crashShutdown].contains(failure.sqlState) || failure.sqlState?.errorClass == "08"
                {
                    lost.withLock { $0 = "the connection that renews this run's hold was lost: \(failure)" }
                    logger.error("run hold connection lost; stopping", metadata: ["error": "\(failure)"])
                    return
                }
                if !warned {
                    logger.warning(
                        "run hold heartbeat failed; sending pauses until it is renewed", metadata: ["error": "\(error)"])
                }
                warned = true
            }
            try? await LoopTimer.sleep(for: Self.heartbeatInterval)
        }
    }

    /// Takes the hold, runs `body` while heartbeats keep it, then gives it up (also when `body` throws).
    static func holding<T: Sendable>(
        db: PGConnection, workerId: String, mode: Mode, sendDelay: Duration, logger: Logger, takeoverStamps: Bool = true,
        fallback: PGConnection? = nil, _ body: @Sendable (RunHolder) async throws -> T
    ) async throws -> T {
        let holder = try await acquire(
            db: db, workerId: workerId, mode: mode, sendDelay: sendDelay, logger: logger, takeoverStamps: takeoverStamps,
            fallback: fallback)
        do {
            let result = try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask {
                    await holder.heartbeats(logger: logger)
                    return nil
                }
                let result = try await body(holder)
                group.cancelAll()
                return result
            }
            await holder.release()
            return result
        } catch {
            await holder.release()
            throw error
        }
    }

    /// A request of this process ended without an answer though it may have reached Postman (a timeout, a
    /// connection broken after the request was written): its bytes may still be on their way through a
    /// proxy or a lossy network when the hold is given up.
    func noteUnansweredRequest() {
        lastUnanswered.withLock { $0 = .now }
    }

    /// How long after a request that ended unanswered giving up the hold still counts as a takeover.
    static let unansweredMemory: Duration = .seconds(60)

    /// Gives the row up: the next run may start after the contract's second, unless this one may still
    /// have requests on their way:
    /// - taken after a takeover, the row is kept until `firstSendAllowed` less a second, so that the next
    ///   holder's first request comes no sooner than this one's could (the dead holder's requests were
    ///   waited out for this one, not for the next; clock-free, unlike the gate's stamp, which a step of the
    ///   database's clock could make look old);
    /// - a request that ended unanswered in the last minute makes the release a takeover on the gate (V011),
    ///   so the next holder waits the longer margin for it.
    func release() async {
        var stamp = lastUnanswered.withLock { $0.map { ContinuousClock.now - $0 < Self.unansweredMemory } ?? false }
        if afterTakeover {
            let keepUntil = firstSendAllowed - .seconds(1)
            if keepUntil > .now {
                // A cancelled task cannot wait: the stamp then makes the next holder wait instead.
                do { try await LoopTimer.sleep(for: keepUntil - .now) } catch { stamp = true }
            }
        }
        let stampTakeover = stamp && takeoverStamps
        let holderId = self.holderId
        for connection in [db, fallback].compactMap({ $0 }) {
            do {
                try await connection.withTransaction { db in
                    try HolderStore.release(db, holderId: holderId, stampTakeover: stampTakeover)
                }
                return
            } catch {
                // The hold's own connection lost (terminated, a restart): the journal's may still work.
                continue
            }
        }
    }

    /// One worker at a time opens the shared run and selects; the others wait for it (the gate row's
    /// setup mark, see `HolderStore.tryBeginSetup`).
    func tryBeginSetup() async throws -> Bool {
        let holderId = self.holderId
        return try await db.withTransaction { db in try HolderStore.tryBeginSetup(db, holderId: holderId) }
    }

    func endSetup() async {
        let holderId = self.holderId
        _ = try? await db.withTransaction { db in try HolderStore.endSetup(db, holderId: holderId) }
    }

    var fence: HolderFence { HolderFence(holderId: holderId) }
}
