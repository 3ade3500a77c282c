import Foundation
import Logging
import PostmanAPI
import RetryCore
import RetryJournal
import RetrySettings

/// Making outcomes durable: flushes to the journal, failures and the worker's end.
extension CampaignWorker {
    /// The next flush falls on the wall clock's next half second. Set by the loop as it starts a flush, so
    /// that the loop's nap in the same pass already aims at it.
    func scheduleNextFlush() {
        let wall = wallNow
        let nextBoundary = ((wall / Self.flushInterval).rounded(.down) + 1) * Self.flushInterval
        flushDue = now + (nextBoundary - wall)
    }

    func flush() async {
        defer {
            flushing = false
            // A flush that outlasted its interval: the next one is already due, and the loop, which does not
            // nap towards a due time in the past (it would spin), is rung to start it.
            if now >= flushDue { ring() }
        }
        let acceptedNow = accepted
        let settledNow = settled
        var callsNow = calls
        callsNow.timeline = timeline
        // Nothing to record: no transaction (three campaigns used to commit 6 empty ones a second).
        guard !acceptedNow.isEmpty || !settledNow.isEmpty || !callsNow.isEmpty else { return }
        accepted = []
        settled = []
        calls = APICallCounts()
        timeline = timeline.emptied
        if let batcher {
            do {
                stats.writeConflicts += try await batcher.write(
                    .init(accepted: acceptedNow, settled: settledNow, calls: callsNow))
            } catch {
                calls.add(callsNow)
                fail(error)
            }
            return
        }
        do {
            if !acceptedNow.isEmpty {
                try await store.recordAccepted(
                    run: context.run.id, messageIds: acceptedNow.map(\.id), acceptedAt: acceptedNow.map(\.at),
                    deadlines: acceptedNow.map(\.deadline))
                context.crashPoints.reach("after-record-accepted")
            }
            if !settledNow.isEmpty {
                context.crashPoints.reach("before-write-back")
                let result = try await store.settle(run: context.run.id, settledNow, apiCalls: callsNow)
                stats.writeConflicts += result.conflicts.count
                JournalBatcher.logRefusals(result, logger)
                context.crashPoints.reach("after-write-back")
            } else {
                try await store.addCalls(run: context.run.id, callsNow)
            }
        } catch {
            // The counts were not recorded: keep them for the next flush (the run is stopping anyway).
            calls.add(callsNow)
            fail(error)
        }
    }

    func fail(_ error: any Error) {
        if let lost = error as? LeaseLost {
            context.stop(.leaseLost(lost.description))
            logger.error("lease lost; stopping", metadata: ["error": "\(lost)"])
            return
        }
        if let lost = error as? HoldLost {
            context.stop(.holdLost(lost.description))
            logger.error("run hold lost; stopping", metadata: ["error": "\(lost)"])
            return
        }
        let failure = JobError.classify(error)
        context.stop(.database(failure.message, status: failure.status))
        logger.error("database failure; stopping", metadata: ["error": "\(failure.message)"])
    }

    /// After the loop: record what is known; unsent intents go back to `selected`.
    func finish() async {
        context.noteLoopPasses(loopPasses)
        // An intent committed while the loop was stopping was never sent: it goes back too.
        if stopping || quietHoursBegan { releaseUnsent() }
        await flush()
        if !calls.isEmpty { await flush() }
        if !unsent.isEmpty {
            do {
                try await store.revertIntents(run: context.run.id, messageIds: unsent)
            } catch {
                fail(error)
            }
        }
        if !deferred.isEmpty {
            do {
                try await store.deferToNextRun(run: context.run.id, messageIds: deferred)
                stats.deferred = deferred.count
            } catch {
                fail(error)
            }
        }
        stats.deferred += deferredUnread
        var awaiting = 0
        for id in wantsView { if case .awaiting = machines[id]?.phase { awaiting += 1 } }
        stats.pendingAtStop = awaiting
    }
}
