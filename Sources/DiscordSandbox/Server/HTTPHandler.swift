import IPC
import NIOCore
import NIOHTTP1

/// Collects each HTTP request with its body (at most 8 MiB), hands it to the routers and writes
/// the answers in order, keeping the connection alive when the client asks to. The REST exchanges
/// go into the server's `exchanges`, which `GET /sandbox/rest/exchanges` returns.
final class HTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let maximumBody = 8 << 20

    private let sandbox: Sandbox
    private let exchanges: RESTExchangeLog
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    private var tooLarge = false
    /// The previous answer: the next is written after it.
    private var previous: EventLoopFuture<Void>?

    init(sandbox: Sandbox, exchanges: RESTExchangeLog) {
        self.sandbox = sandbox
        self.exchanges = exchanges
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body.clear()
            tooLarge = false
        case .body(var chunk):
            if body.readableBytes + chunk.readableBytes > Self.maximumBody {
                tooLarge = true
            } else {
                body.writeBuffer(&chunk)
            }
        case .end:
            guard let head else { return }
            self.head = nil
            let request = HTTPRequest(head: head, body: body)
            let outcome: HTTPOutcome = tooLarge
                ? .now(.error(DiscordError(status: 413, code: 40005, message: "Request entity too large")))
                : route(request)
            let reply: EventLoopFuture<HTTPReply>
            switch outcome {
            case .now(let answer):
                reply = context.eventLoop.makeSucceededFuture(answer)
            case .later(let work):
                let promise = context.eventLoop.makePromise(of: HTTPReply.self)
                // A channel handler is synchronous: NIO's bridge starts the async work in a task
                // and the connection's write chain (`previous`) waits for its answer, in order.
                promise.completeWithTask { await work() }
                reply = promise.futureResult
            }
            let keepAlive = head.isKeepAlive
            let version = head.version
            let after = previous ?? context.eventLoop.makeSucceededVoidFuture()
            let written = after.flatMap { reply }.assumeIsolated().map { answer in
                self.write(answer, version: version, keepAlive: keepAlive, context: context)
            }.nonisolated()
            previous = written
        }
    }

    private func route(_ request: HTTPRequest) -> HTTPOutcome {
        let segments = request.path.split(separator: "/").map { HTTPRequest.percentDecoded(String($0)) }
        if segments.starts(with: ["api", "v10"]) {
            return .now(RESTRouter(sandbox: sandbox, exchanges: exchanges).respond(to: request, segments: Array(segments.dropFirst(2))))
        }
        if request.method == .GET && segments == ["sandbox", "rest", "exchanges"] {
            return .now(.json(.ok, exchanges.json))
        }
        if request.method == .GET, segments.count == 3, segments[0] == "attachments", let id = UInt64(segments[1]) {
            // The CDN: an uploaded file, to anyone with its URL, as Discord's attachment links are.
            guard let file = sandbox.withWorld({ $0.attachments[id] }), file.filename == segments[2] else { return .now(.error(.notFound)) }
            return .now(HTTPReply(status: .ok, headers: [("Content-Type", file.contentType)], body: ByteBuffer(bytes: file.bytes)))
        }
        if segments.first == "sandbox" {
            return ControlRouter(sandbox: sandbox).respond(to: request, segments: Array(segments.dropFirst()))
        }
        return .now(.error(.notFound))
    }

    private func write(_ reply: HTTPReply, version: HTTPVersion, keepAlive: Bool, context: ChannelHandlerContext) {
        var headers = HTTPHeaders(reply.headers)
        headers.replaceOrAdd(name: "Content-Length", value: String(reply.body?.readableBytes ?? 0))
        headers.replaceOrAdd(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: reply.status, headers: headers))), promise: nil)
        if let body = reply.body, reply.status != .noContent {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            done.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
