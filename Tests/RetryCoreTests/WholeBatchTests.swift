import RetryCore
import Testing

/// When one whole-batch call may stand for the members' single retries (`WholeBatch.decide`).
@Suite struct WholeBatchDecisionTests {
    static func member(_ id: String, _ status: String, attempts: Int = 2) -> WholeBatch.Member {
        WholeBatch.Member(id: id, view: PostmanView(latestStatus: status, attempts: attempts, batchStatus: "messages_enqueued"))
    }

    @Test func aBatchAtRestWhoseFailuresAreExactlyTheRunsGoesWhole() {
        let members = [
            Self.member("a", "failure"), Self.member("b", "failure"), Self.member("c", "failure"), Self.member("d", "success")
        ]
        #expect(WholeBatch.decide(members: members, ready: ["a", "b", "c"], everCalled: false) == .whole)
        #expect(WholeBatch.decide(members: members, ready: ["a", "b"], everCalled: false) != .whole, "c is not the run's")
        #expect(WholeBatch.decide(members: members, ready: ["a", "b", "c"], everCalled: true) != .whole)
    }

    /// A member on its way (here this run's own accepted retry, `sent`) may fail before the call goes; the
    /// call would then retry it a second time in the run. Only a batch at rest goes whole.
    @Test func aMemberStillOnItsWayMakesTheBatchGoBySingles() {
        for status in ["sent", "sending", "accepted", "sent_to_telco", "created"] {
            let members = [
                Self.member("a", "failure"), Self.member("b", "failure"), Self.member("c", "failure"), Self.member("d", status)
            ]
            let decision = WholeBatch.decide(members: members, ready: ["a", "b", "c"], everCalled: false)
            #expect(decision != .whole, "a member in \(status)")
        }
    }
}
