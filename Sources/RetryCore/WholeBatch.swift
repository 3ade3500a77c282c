/// When one `POST /campaigns/{c}/batch/{b}/retry` may stand for the single retries of a batch's members
/// (CONTRACT.md section 1, step 3; postman-v2-api.md section 1.4). Postman retries every member in
/// `failure` with retries left, whatever its error code, so the call is right only when those members
/// are exactly the ones the run selected and found retryable: any other member (an OTP, a permanent or
/// unknown code, one out of the run's scope or limit, one changed in the table) would be retried too.
public enum WholeBatch {
    /// A member as the batch's own list pages show it.
    public struct Member: Sendable, Equatable {
        public var id: String
        public var view: PostmanView

        public init(id: String, view: PostmanView) {
            self.id = id
            self.view = view
        }
    }

    public enum Decision: Sendable, Equatable {
        case whole
        /// Why not, for the log and `plan`.
        case singles(String)
    }

    /// At least this many members must go for one call to be worth a batch intent and a read of the
    /// batch's pages (a page and a call cost two requests; two single retries cost the same).
    public static let minimumMembers = 3

    /// Whether Postman's batch retry would retry this member: in `failure`, with retries left.
    public static func wouldRetry(_ view: PostmanView) -> Bool {
        guard view.latestStatus == "failure", let attempts = view.attempts else { return false }
        return attempts - 1 < SelectionRules.retryLimit
    }

    /// `members`: every member Postman lists for the batch (all its pages); `ready`: the members this run
    /// selected whose lifecycle found them retryable and waits for an intent; `everCalled`: a whole-batch
    /// call for this batch is in the journal (any run): never a second one.
    public static func decide(members: [Member], ready: Set<String>, everCalled: Bool) -> Decision {
        if everCalled { return .singles("a whole-batch call was already made for this batch") }
        var wouldRetry: Set<String> = []
        for member in members {
            let view = member.view
            if view.latestStatus == "created" { return .singles("a member is still created (Postman refuses the call)") }
            // A member still on its way (this run's own accepted retry among them) may fail before the call
            // goes, and Postman would then retry it a second time: only a batch at rest goes whole.
            if view.latestStatus != "success" && view.latestStatus != "failure" {
                return .singles("a member is still \(view.latestStatus) (it may fail before the call and be retried too)")
            }
            guard view.latestStatus == "failure" else { continue }
            guard view.attempts != nil else { return .singles("a member's attempt history is not shown") }
            if Self.wouldRetry(view) { wouldRetry.insert(member.id) }
        }
        if let status = members.lazy.compactMap(\.view.batchStatus).first,
            !MessageLifecycle.retryableBatchStatuses.contains(status)
        {
            return .singles("the batch is \(status)")
        }
        guard wouldRetry.count >= minimumMembers else { return .singles("fewer than \(minimumMembers) members to retry") }
        guard wouldRetry == ready else {
            let extra = wouldRetry.subtracting(ready).count
            let missing = ready.subtracting(wouldRetry).count
            return .singles("Postman would retry \(extra) member(s) the run did not select, and not \(missing) it did")
        }
        return .whole
    }
}
