import Foundation
import RetryCore
import Testing

@Suite struct SelectionRulesTests {
    func row(
        messageId: String? = "m1", campaign: String? = "c1", otp: Bool? = false, count: Int? = 0, code: String? = nil
    ) -> CandidateRow {
        CandidateRow(
            key: "1", messageId: messageId, campaignId: campaign, batchId: nil, recipient: "6591234567", isOtp: otp,
            status: "failure", retryCount: count, errorCode: code, createdAt: "2026-11-21 00:00:00+00", updatedAt: nil)
    }

    @Test func reasonsApplyInContractOrder() {
        let rules = SelectionRules(otpCampaigns: ["otp-campaign"])
        #expect(rules.classify(row()) == .selected)
        #expect(rules.classify(row(otp: true, count: 3, code: "recipient_invalid")) == .skipped(.otp))
        #expect(rules.classify(row(campaign: "otp-campaign")) == .skipped(.otp))
        #expect(rules.classify(row(count: 3, code: "recipient_invalid")) == .skipped(.retryLimit))
        #expect(rules.classify(row(code: "content_invalid")) == .skipped(.permanentError))
        #expect(rules.classify(row(code: "RECIPIENT_UNAVAILABLE")) == .skipped(.unknownErrorCode))
        #expect(rules.classify(row(code: "")) == .skipped(.unknownErrorCode), "an empty code is unknown, not NULL")
        #expect(rules.classify(row(code: "routing_error")) == .selected)
    }

    /// The default policy is read from the error catalogue; these are CONTRACT.md section 3's lists.
    @Test func defaultPolicyIsTheContractsLists() {
        #expect(ErrorPolicy.default.permanent == ["recipient_invalid", "content_invalid"])
        #expect(
            ErrorPolicy.default.retryable == [
                "recipient_unavailable", "routing_error", "message_expired", "delivery_unknown_error", "server_unknown_error"
            ])
        #expect(!ErrorPolicy.default.retryUnknown)
        for info in ErrorCatalog.deliveryErrors {
            #expect(ErrorPolicy.default.classify(info.code) == (info.worthRetrying == .no ? .permanent : .retryable))
        }
        #expect(ErrorCatalog.info("too_many_message_attempts_error").meaning == "Postman allows no more retries (3 used).")
    }

    @Test func malformedRowsNameTheirField() {
        let rules = SelectionRules()
        for (candidate, field) in [
            (row(messageId: ""), "message_id"), (row(messageId: ".."), "message_id"), (row(campaign: ""), "campaign_id"),
            (row(count: -1), "retry_count"), (row(count: nil), "retry_count"), (row(otp: nil), "is_otp")
        ] {
            guard case .skipped(.malformed, let named, _) = rules.classify(candidate) else {
                Issue.record("\(candidate) should be malformed")
                continue
            }
            #expect(named == field)
        }
        #expect(rules.classify(row(messageId: "a/b?c")) == .selected, "odd ids are encoded, not rejected")
        // A batch id goes into paths too (CONTRACT.md section 3: an id that is `.` or `..`).
        for batch in [".", ".."] {
            var candidate = row()
            candidate.batchId = batch
            guard case .skipped(.malformed, let named, _) = rules.classify(candidate) else {
                Issue.record("batch id \(batch) should be malformed")
                continue
            }
            #expect(named == "batch_id")
        }
        var noBatch = row()
        noBatch.batchId = ""
        #expect(rules.classify(noBatch) == .selected, "an empty batch id is no batch")
    }

    @Test func unreadableValuesAndOverlongIdsAreMalformed() {
        let rules = SelectionRules()
        var unreadable = row()
        unreadable.unreadable = FieldProblem(field: "key", problem: "is NULL")
        #expect(rules.classify(unreadable) == .skipped(.malformed, field: "key", problem: "is NULL"))
        // The rules before `malformed` still come first (CONTRACT.md section 3).
        var otp = unreadable
        otp.isOtp = true
        #expect(rules.classify(otp) == .skipped(.otp))

        let limit = SelectionRules.maxIdBytes
        #expect(rules.classify(row(messageId: String(repeating: "m", count: limit))) == .selected)
        for (candidate, field) in [
            (row(messageId: String(repeating: "m", count: limit + 1)), "message_id"),
            (row(messageId: String(repeating: "📱", count: limit / 4 + 1)), "message_id"),  // bytes, not characters
            (row(campaign: String(repeating: "c", count: 10_000)), "campaign_id")
        ] {
            guard case .skipped(.malformed, let named, let problem) = rules.classify(candidate) else {
                Issue.record("an over-long \(field) should be malformed")
                continue
            }
            #expect(named == field)
            #expect(problem?.contains("bytes long") == true)
        }
        var batch = row()
        batch.batchId = String(repeating: "b", count: limit + 1)
        #expect(
            rules.classify(batch)
                == .skipped(
                    .malformed, field: "batch_id",
                    problem: "is \(limit + 1) bytes long; ids of more than \(limit) bytes are not taken"))
        #expect(
            rules.classify(row(messageId: "it's \"quoted\"\nwith 📱 and %2F")) == .selected,
            "odd characters are encoded, not rejected")
    }

    @Test func finalityFollowsTheRecipient() {
        #expect(PostmanStatus.isFinal("success", recipient: "6591234567"))
        #expect(!PostmanStatus.isFinal("sent_to_telco", recipient: "6591234567"))
        #expect(PostmanStatus.isFinal("sent_to_telco", recipient: "447700900123"))
        #expect(!PostmanStatus.isFinal("teleported", recipient: "447700900123"))
    }

    @Test func phoneNumbersAreMasked() {
        #expect(maskPhone("6591112222") == "65****2222")
        #expect(!maskPhone("447700900123").contains("7700900"))
        #expect(maskPhone("123") == "***")
        // A short Singapore number keeps its country code (and nothing more): the masked form decides
        // whether `sent_to_telco` is final, and "****" read as a foreign number.
        #expect(maskPhone("6512345") == "65****")
        #expect(!PostmanStatus.isFinal("sent_to_telco", recipient: maskPhone("6512345")))
    }

    @Test func keyVariableNames() {
        #expect(apiKeyVariableName(campaignId: "campaign_1a-b.c") == "POSTMAN_API_KEY_CAMPAIGN_1A_B_C")
    }

    @Test func durations() {
        #expect(parseDuration("72h") == .seconds(72 * 3600))
        #expect(parseDuration("1h30m") == .seconds(5400))
        #expect(parseDuration("500ms") == .milliseconds(500))
        #expect(parseDuration("15") == .seconds(15))
        #expect(parseDuration("soon") == nil)
        #expect(parseDuration("-5m") == nil)
    }
}

@Suite struct OutcomeRulesTests {
    @Test func acceptedRetryTakesTheLargerCountCappedAtThree() {
        let final = FinalState.afterAcceptedRetry(
            rowRetryCount: 0, postmanRetries: 2, lastStatus: "failure", newestError: "routing_error", final: true)
        #expect(final == RowUpdate(status: "failure", retryCount: 2, errorCode: .some("routing_error")))
        let capped = FinalState.afterAcceptedRetry(
            rowRetryCount: 3, postmanRetries: 5, lastStatus: "success", newestError: nil, final: true)
        #expect(capped.retryCount == 3)
        let pending = FinalState.afterAcceptedRetry(
            rowRetryCount: 1, postmanRetries: nil, lastStatus: nil, newestError: "x", final: false)
        #expect(pending == RowUpdate(status: "created", retryCount: 2, errorCode: .some(nil)))
    }
}
