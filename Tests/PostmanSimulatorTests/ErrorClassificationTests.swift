import Foundation
import Testing

@testable import PostmanAPI

/// Issue 14: how Postman's refusals and the edge's answers are classified, whatever the HTTP status.
@Suite("Refusal codes and edge errors")
struct ErrorClassificationTests {
    static func error(_ status: Int, code: String? = nil, body: String? = nil) -> PostmanAPIError {
        let text = body ?? code.map { #"{"error":{"code":"\#($0)","message":"m","type":"t","id":"r1"}}"# } ?? ""
        return PostmanAPIError.fromResponse(status: status, body: Data(text.utf8), retryAfter: nil, apiKey: "key-secret")
    }

    @Test("The key and source-IP codes are a credential refusal whatever the 4xx status; 401 and 403 always are")
    func credentialRefusals() {
        for code in ["invalid_api_key_provided", "invalid_ip_address_error", "invalid_ip_address_used", "authentication_required"]
        {
            for status in [400, 401, 403, 404, 422] {
                #expect(Self.error(status, code: code).isCredentialRefusal, "\(status) \(code)")
            }
        }
        #expect(Self.error(401, body: #"{"message":"Unauthorized","statusCode":401}"#).isCredentialRefusal)
        #expect(Self.error(403, body: "<html>blocked</html>").isCredentialRefusal)
        #expect(Self.error(403, code: "whatever").isCredentialRefusal)
    }

    @Test("Other 4xx codes, 429, 5xx and transport failures are not credential refusals")
    func notCredentialRefusals() {
        #expect(!Self.error(400, code: "message_not_found_or_retry_message_not_in_failure_status").isCredentialRefusal)
        #expect(!Self.error(400, code: "too_many_message_attempts_error").isCredentialRefusal)
        #expect(!Self.error(400, code: "invalid_path").isCredentialRefusal)
        #expect(!Self.error(429, code: "too_many_requests").isCredentialRefusal)
        // A 5xx that happens to carry the code is an outage, not a refusal.
        #expect(!Self.error(500, code: "invalid_api_key_provided").isCredentialRefusal)
        #expect(!PostmanAPIError(kind: .timeout).isCredentialRefusal)
        #expect(!PostmanAPIError(kind: .connection).isCredentialRefusal)
        #expect(!PostmanAPIError(kind: .badResponse(status: 200), code: "invalid_api_key_provided").isCredentialRefusal)
    }

    @Test("Cloudflare 520-524 and any 5xx with an HTML or non-JSON body may have reached the server and are retried")
    func edgeErrors() {
        let html = "<!DOCTYPE html><html><head><title>postman.gov.sg | 524: A timeout occurred</title></head></html>"
        for status in [520, 521, 522, 523, 524] {
            for body in [html, ""] {
                let error = Self.error(status, body: body)
                #expect(error.mayHaveReachedServer, "\(status)")
                #expect(error.isRetryable, "\(status)")
                #expect(error.isEdgeError, "\(status)")
                #expect(!error.isCredentialRefusal)
                #expect(error.httpStatus == status)
            }
        }
        for status in [500, 502, 503, 504] {
            let error = Self.error(status, body: html)
            #expect(error.mayHaveReachedServer && error.isRetryable && error.isEdgeError, "\(status)")
            #expect(error.bodyWasNotJSON)
            #expect(error.message?.hasPrefix("non-JSON body") == true)
            let plain = Self.error(status, body: "upstream connect error")
            #expect(plain.mayHaveReachedServer && plain.isEdgeError, "\(status) plain text")
        }
        // Postman's own JSON 5xx: reached the server, but not from the edge.
        let own = Self.error(500, code: "internal_server_error")
        #expect(own.mayHaveReachedServer && own.isRetryable && !own.isEdgeError && !own.bodyWasNotJSON)
        // A 4xx HTML page is neither.
        #expect(!Self.error(404, body: html).isEdgeError)
        #expect(!Self.error(404, body: html).mayHaveReachedServer)
    }
}
