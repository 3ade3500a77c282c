import Foundation
import PostmanSimulator
import Testing

@testable import PostmanAPI

/// The job's direct decoder (issue 17) must make of every body exactly what the tolerant `Decode` makes
/// of it, and give up (nil) rather than guess whenever the body is not plain, well-typed JSON.
@Suite("FastDecode gives what Decode gives")
struct FastDecodeTests {
    private func slowMessage(_ json: String) -> PostmanMessage? {
        Decode.object(Data(json.utf8)).flatMap(Decode.message)
    }

    private func slowPage(_ json: String) -> PostmanPage? {
        Decode.object(Data(json.utf8)).flatMap(Decode.page)
    }

    private func samePage(_ a: PostmanPage?, _ b: PostmanPage?) -> Bool {
        guard let a, let b else { return a == nil && b == nil }
        return a.messages == b.messages && a.hasNextPage == b.hasNextPage && a.endCursor == b.endCursor
            && a.hasPreviousPage == b.hasPreviousPage && a.startCursor == b.startCursor && a.skippedItems == b.skippedItems
            && a.otherIds == b.otherIds
    }

    static let plainMessages = [
        // Postman's single GET: attempts with a nested error, batches, unknown fields of every type.
        #"{"id":"m1","campaignId":"c1","recipient":"6591234567","latestStatus":"failure","createdAt":"2026-11-21T10:00:00.123+08:00","updatedAt":"2026-11-21T10:57:00Z","unknown":{"deep":[1,2.5e-3,-0,true,false,null,"x\"y"]},"attempts":[{"status":"failure","createdAt":"2026-11-21T10:30:00+08:00","error":{"type":"delivery_error","code":"recipient_unavailable","extra":1}},{"status":"failure","createdAt":"2026-11-21T10:57:00+08:00","error":{"type":"server_error","code":"server_unknown_error"}}],"batches":[{"id":"b1","status":"messages_enqueued"},{"id":"b2"},{"status":"x"},7]}"#,
        // The batch list's shape: flat errorType/errorCode (null and empty), numAttempts.
        #"{"id":"m2","latestStatus":"success","numAttempts":3,"messageAttempts":[{"status":"success","createdAt":"2026-11-21T11:00:00+08:00","errorType":null,"errorCode":""},{"status":"failure","errorType":"delivery_error","errorCode":"routing_error"},"not an attempt"]}"#,
        // Escapes, unicode escapes (a surrogate pair), non-ASCII text, whitespace everywhere.
        " { \"id\" : \"m\\/3\\u00e9\\ud83d\\ude00\" ,\n\t\"latestStatus\":\"sent\",\"recipient\":\"é 65\",\"attempts\":null,\"messageAttempts\":[] } ",
        // Absent or null fields.
        #"{"id":"m4","latestStatus":"created","batches":null,"error":null,"numAttempts":null}"#,
        // Not a message (no id): both say nil.
        #"{"latestStatus":"failure"}"#,
        #"{}"#
    ]

    @Test("Plain message bodies: the fast path answers, with Decode's result", arguments: plainMessages)
    func plainMessage(_ json: String) throws {
        let fast = try #require(FastDecode.message(Data(json.utf8)), "the fast path gave up on a plain body")
        #expect(fast == slowMessage(json))
        #expect(PostmanClient.message(Data(json.utf8)) == slowMessage(json))
    }

    static let unusualMessages = [
        #"{"id":"m","latestStatus":"failure","recipient":6591234567}"#,  // a number where a string is read
        #"{"id":7,"latestStatus":"failure"}"#,
        #"{"id":"m","latestStatus":"failure","numAttempts":"4"}"#,  // a count as a string
        #"{"id":"m","latestStatus":"failure","numAttempts":4.0}"#,
        #"{"id":"m","latestStatus":"failure","attempts":"none","messageAttempts":[{"status":"failure"}]}"#,
        #"{"id":"m","latestStatus":"failure","attempts":[{"status":"failure","error":"boom","errorCode":"routing_error"}]}"#,
        #"{"id":"m","id":"n","latestStatus":"failure"}"#,  // a duplicate key
        #"{"id":"m","latestStatus":"failure","batches":{"id":"b"}}"#,
        #"{"id":"m","latestStatus":"failure","x":01}"#,  // not JSON
        #"{"id":"m","latestStatus":"failure"} trailing"#,
        #"{"id":"m","latestStatus":"fail"#,
        #"["id"]"#,
        ""
    ]

    @Test("Unusual bodies: the fast path gives up, and the client still gets Decode's result", arguments: unusualMessages)
    func unusualMessage(_ json: String) {
        #expect(FastDecode.message(Data(json.utf8)) == nil)
        #expect(PostmanClient.message(Data(json.utf8)) == slowMessage(json))
    }

    @Test("Invalid UTF-8 inside a string: given up, as JSONSerialization refuses the body")
    func invalidUTF8() {
        var body = Data(#"{"id":"m","latestStatus":"fa"#.utf8)
        body.append(contentsOf: [0xC3, 0x28])
        body.append(contentsOf: Data(#"ilure"}"#.utf8))
        #expect(FastDecode.message(body) == nil)
        #expect(PostmanClient.message(body) == Decode.object(body).flatMap(Decode.message))
    }

    @Test("A page as the simulator writes it: the fast path answers, with Decode's result")
    func simulatorPage() throws {
        let items = (0..<50).map { n in
            #"{"id":"message_\#(n)","campaignId":"c1","recipient":"659\#(n)","latestStatus":"\#(n % 3 == 0 ? "success" : "failure")","createdAt":"2026-11-21T10:00:00+08:00","attempts":[{"status":"failure","createdAt":"2026-11-21T10:0\#(n % 10):00+08:00","error":{"type":"delivery_error","code":"recipient_unavailable"}}],"batches":[]}"#
        }
        let json =
            #"{"data":[\#(items.joined(separator: ",")),{"latestStatus":"x"},42],"pageData":{"hasNextPage":true,"endCursor":"YWJj\/ZA==","hasPreviousPage":false,"startCursor":null}}"#
        let fast = try #require(FastDecode.page(Data(json.utf8)), "the fast path gave up on a plain page")
        let slow = slowPage(json)
        #expect(samePage(fast, slow))
        #expect(fast?.messages.count == 50 && fast?.skippedItems == 2 && fast?.endCursor == "YWJj/ZA==")
    }

    @Test("A sweep's page: only wanted items are decoded whole, the others give their id, fast and slow alike")
    func wantedItems() throws {
        let items = (0..<20).map { n in
            // Odd items are not wanted; one of them has a value the fast path would refuse in a wanted item.
            let recipient = n == 7 ? "6591234567" : #""659\#(n)""#
            return
                #"{"id":"m\#(n)","recipient":\#(recipient),"latestStatus":"failure","attempts":[{"status":"failure","error":{"code":"x"}}]}"#
        }
        let extras = [#"{"id":"m98"}"#, #"{"id":"m99","latestStatus":null}"#, #"{"latestStatus":"failure"}"#]
        let json = #"{"data":[\#((items + extras).joined(separator: ","))],"pageData":{"hasNextPage":false}}"#
        let wanted: @Sendable (String) -> Bool = { id in Int(id.dropFirst()).map { $0 % 2 == 0 } ?? true }
        let whole = try #require(slowPage(json))
        let fast = try #require(FastDecode.page(Data(json.utf8), fullyDecoding: wanted), "the fast path gave up")
        #expect(fast?.messages == whole.messages.filter { wanted($0.id) })
        #expect(fast?.otherIds == (0..<20).filter { $0 % 2 == 1 }.map { "m\($0)" })
        #expect(fast?.skippedItems == 3 && whole.skippedItems == 3)
        #expect(samePage(PostmanClient.page(Data(json.utf8), wanted: wanted), fast))
        // A wanted item the fast path refuses: the tolerant decoder answers, split the same way.
        let refused = json.replacingOccurrences(of: #"{"id":"m2","#, with: #"{"id":"m2","numAttempts":"4","#)
        #expect(FastDecode.page(Data(refused.utf8), fullyDecoding: wanted) == nil)
        let slow = try #require(PostmanClient.page(Data(refused.utf8), wanted: wanted))
        #expect(slow.otherIds == fast?.otherIds && slow.messages.map(\.id) == fast?.messages.map(\.id))
        // Without `wanted`, every item is decoded whole, as before: the numeric recipient of m7 sends the
        // page to the tolerant decoder, which the client then uses.
        #expect(FastDecode.page(Data(json.utf8)) == nil)
        #expect(PostmanClient.page(Data(json.utf8))?.messages == whole.messages)
    }

    /// A sweep's page whose unwanted items carry `text` (raw JSON string content) in a skipped field and
    /// `keyed` as a member: what the fast path makes of it, and the client's answer.
    private func sweepPage(text: String, keyed: String = #""note":1"#) -> (
        fast: PostmanPage??, client: PostmanPage?, slow: PostmanPage?
    ) {
        let items = (0..<6).map { n in
            #"{"id":"m\#(n)","fullMessage":"\#(text)",\#(keyed),"latestStatus":"failure","attempts":[{"status":"failure","x":["\#(text)"]}]}"#
        }
        let json = #"{"data":[\#(items.joined(separator: ","))],"pageData":{"hasNextPage":false}}"#
        let wanted: @Sendable (String) -> Bool = { $0 == "m0" }
        let slow = slowPage(json).map { page -> PostmanPage in
            var split = page
            split.messages = page.messages.filter { wanted($0.id) }
            split.otherIds = page.messages.filter { !wanted($0.id) }.map(\.id)
            return split
        }
        return (
            FastDecode.page(Data(json.utf8), fullyDecoding: wanted), PostmanClient.page(Data(json.utf8), wanted: wanted), slow
        )
    }

    @Test("Skipped strings: escapes and non-ASCII text at every offset of an 8-byte word are read past, not built")
    func skippedStrings() throws {
        let pieces = [#"\n"#, #"\""#, #"\\"#, #"\/"#, #"\u00e9"#, #"\ud83d\ude00"#, "é", "語", "\u{7F}", #"\t\r\b\f"#]
        for piece in pieces {
            for offset in 0..<10 {
                let text = String(repeating: "a", count: offset) + piece + String(repeating: "b", count: 9 - offset)
                let (fast, client, slow) = sweepPage(text: text)
                let page = try #require(fast, "the fast path gave up on \(text)")
                #expect(samePage(page, slow), "\(text)")
                #expect(page?.otherIds == (1..<6).map { "m\($0)" }, "\(text)")
                #expect(samePage(client, slow))
            }
        }
    }

    @Test("Skipped strings the fast path must refuse, as string() does: the client still gets Decode's answer")
    func refusedSkippedStrings() {
        // A bad escape, a lone low surrogate, a high one not followed by a low one, a raw control character.
        for text in [#"a\x"#, #"\udc00"#, #"\ud83dx"#, #"\ud83d\u0041"#, "a\u{01}b", "tab\there"] {
            let (fast, client, slow) = sweepPage(text: text)
            #expect(fast == nil, "\(text)")
            #expect(samePage(client, slow), "\(text)")
        }
        // An escaped key in an item that is only skipped: left to the tolerant decoder.
        let (fast, client, slow) = sweepPage(text: "plain", keyed: #""no\u0074e":1"#)
        #expect(fast == nil)
        #expect(samePage(client, slow) && client?.otherIds.count == 5)
    }

    @Test("Invalid UTF-8 in a skipped string or key: given up")
    func invalidUTF8Skipped() {
        for template in [
            #"{"data":[{"id":"m1","latestStatus":"failure","x":"ab"#, #"{"data":[{"id":"m1","latestStatus":"failure",""#
        ] {
            var body = Data(template.utf8)
            body.append(contentsOf: [0xC3, 0x28])
            body.append(contentsOf: Data(template.hasSuffix("ab") ? #"cd"}]}"#.utf8 : #"":1}]}"#.utf8))
            #expect(FastDecode.page(body, fullyDecoding: { _ in false }) == nil)
        }
    }

    @Test("Pages: no data array, odd page flags, a numeric id inside")
    func oddPages() {
        let noData = #"{"pageData":{"hasNextPage":false}}"#
        #expect(FastDecode.page(Data(noData.utf8)).map { $0 == nil } == true)  // plain JSON, not a page
        #expect(slowPage(noData) == nil)
        for json in [
            #"{"data":[],"pageData":{"hasNextPage":"true"}}"#, #"{"data":[],"pageData":{"hasNextPage":1}}"#,
            #"{"data":[{"id":5,"latestStatus":"failure"}]}"#, #"{"data":{},"pageData":null}"#
        ] {
            #expect(FastDecode.page(Data(json.utf8)) == nil, "\(json)")
        }
    }
}
