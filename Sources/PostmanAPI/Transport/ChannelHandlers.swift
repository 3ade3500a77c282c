import Foundation
import NIOCore
import NIOSSL
import NIOTLS

/// Completes the promise when the TLS handshake completes, fails it on any error before.
final class TLSHandshakeWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    private let promise: EventLoopPromise<Void>
    private var done = false

    init(promise: EventLoopPromise<Void>) { self.promise = promise }

    static func install(on channel: any Channel, context: NIOSSLContext, serverName: String?, promise: EventLoopPromise<Void>)
        throws
    {
        let tls = try NIOSSLClientHandler(context: context, serverHostname: serverName)
        try channel.pipeline.syncOperations.addHandler(tls)
        try channel.pipeline.syncOperations.addHandler(TLSHandshakeWatcher(promise: promise))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event, !done {
            done = true
            promise.succeed(())
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !done {
            done = true
            promise.fail(error)
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done {
            done = true
            promise.fail(NetworkSettings.ClosedEarly())
        }
        context.fireChannelInactive()
    }
}

/// Opens a CONNECT tunnel through an HTTP proxy, then hands the channel to `then` (the TLS handshake).
final class ConnectTunnelHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let target: String
    private let authorization: String?
    private let then: () throws -> Void
    private let promise: EventLoopPromise<Void>
    private var received = ""
    private var done = false

    init(target: String, authorization: String?, then: @escaping () throws -> Void, promise: EventLoopPromise<Void>) {
        self.target = target
        self.authorization = authorization
        self.then = then
        self.promise = promise
    }

    func channelActive(context: ChannelHandlerContext) {
        var head = "CONNECT \(target) HTTP/1.1\r\nHost: \(target)\r\n"
        if let authorization { head += "Proxy-Authorization: \(authorization)\r\n" }
        head += "\r\n"
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: head)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        var buffer = unwrapInboundIn(data)
        received += buffer.readString(length: buffer.readableBytes) ?? ""
        guard let end = received.range(of: "\r\n\r\n") else {
            if received.utf8.count > 16 * 1024 {
                fail(context, NetworkSettings.ProxyRefusedTunnel(statusLine: "oversized answer"))
            }
            return
        }
        let statusLine = String(received[..<end.lowerBound].prefix(while: { $0 != "\r" }))
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, parts[1] == "200" else {
            fail(context, NetworkSettings.ProxyRefusedTunnel(statusLine: statusLine))
            return
        }
        done = true
        do {
            try then()
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        } catch {
            promise.fail(error)
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context, error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(context, NetworkSettings.ClosedEarly())
        context.fireChannelInactive()
    }

    private func fail(_ context: ChannelHandlerContext, _ error: any Error) {
        guard !done else { return }
        done = true
        promise.fail(error)
        context.close(promise: nil)
    }
}
