import FoundationEssentials
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A local HTTP server standing in for Discord's REST API: each request is recorded and answered
/// by the test's script.
final class ScriptedHTTPServer: Sendable {
    struct Request: Sendable {
        var method: String
        var uri: String
        var headers: [String: String]
        var body: String
        var at: ContinuousClock.Instant
    }

    struct Response: Sendable {
        var status: Int
        var headers: [String: String] = [:]
        var body: String = ""
    }

    typealias Script = @Sendable (Request, Int) -> Response

    private final class Recorder: Sendable {
        let requests = Mutex<[Request]>([])
    }

    private let channel: any Channel
    private let recorded = Recorder()
    let port: Int

    var requests: [Request] { recorded.requests.withLock { $0 } }
    var baseURL: String { "http://127.0.0.1:\(port)/api/v10" }

    init(script: @escaping Script) async throws {
        let recorded = self.recorded
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(Handler(recorded: recorded, script: script))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress?.port ?? 0
    }

    func close() async throws {
        try await channel.close()
    }

    private final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        let recorded: Recorder
        let script: Script
        var head: HTTPRequestHead?
        var body = ""

        init(recorded: Recorder, script: @escaping Script) {
            self.recorded = recorded
            self.script = script
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                self.head = head
                body = ""
            case .body(let buffer):
                body += String(buffer: buffer)
            case .end:
                guard let head else { return }
                let request = Request(
                    method: head.method.rawValue, uri: head.uri,
                    headers: Dictionary(head.headers.map { ($0.name.lowercased(), $0.value) }, uniquingKeysWith: { $1 }),
                    body: body, at: .now
                )
                let index = recorded.requests.withLock { $0.append(request); return $0.count - 1 }
                let response = script(request, index)
                var headers = HTTPHeaders(response.headers.map { ($0.key, $0.value) })
                headers.add(name: "Content-Length", value: "\(response.body.utf8.count)")
                if !response.body.isEmpty { headers.add(name: "Content-Type", value: "application/json") }
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .init(statusCode: response.status), headers: headers))), promise: nil)
                if !response.body.isEmpty {
                    context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: response.body)))), promise: nil)
                }
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            }
        }
    }
}
