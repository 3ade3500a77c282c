import Foundation
import RetryJournal
import Testing

@testable import RetryReport

/// How the report words a whole-batch call's answer: Postman's status, a lost answer (no status, the job's
/// own `answer_lost`), a call whose answer the journal never got (a kill), and a refusal with Postman's code.
@Suite struct BatchCallLineTests {
    static func call(_ status: Int?, _ code: String?) throws -> RunSummary.BatchCall {
        var object: [String: Any] = ["campaign_id": "c1", "batch_id": "b1", "members": 1200, "at": "2026-12-01 10:00:00 +08:00"]
        if let status { object["http_status"] = status }
        if let code { object["postman_code"] = code }
        return try JSONDecoder().decode(RunSummary.BatchCall.self, from: JSONSerialization.data(withJSONObject: object))
    }

    @Test func eachAnswerIsWordedForAPerson() throws {
        let head = "Batch b1 of c1: 1,200 members in one call at 2026-12-01 10:00:00 +08:00"
        #expect(ReportView.batchCallLine(try Self.call(201, nil)) == head + ", answered 201")
        #expect(
            ReportView.batchCallLine(try Self.call(nil, "answer_lost"))
                == head + ", answer lost (a timeout or a dropped connection)")
        #expect(ReportView.batchCallLine(try Self.call(nil, nil)) == head + ", answer unknown")
        #expect(
            ReportView.batchCallLine(try Self.call(400, "batch_not_found_or_is_not_retryable"))
                == head + ", answered 400 batch_not_found_or_is_not_retryable")
    }
}
