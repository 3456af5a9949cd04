import FoundationEssentials
import IPC
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization

@testable import BotWorker

/// A local WebSocket server standing in for Discord's Gateway: each connection is handed to the
/// test's script, which sends and expects payloads as Discord would.
final class ScriptedGatewayServer: Sendable {
    /// One accepted WebSocket connection.
    final class Connection: @unchecked Sendable {  // the channel is thread-safe; the stream is Sendable
        let path: String
        private let channel: any Channel
        private let inbound: AsyncStream<String>
        private let continuation: AsyncStream<String>.Continuation

        init(path: String, channel: any Channel) {
            self.path = path
            self.channel = channel
            (inbound, continuation) = AsyncStream.makeStream(of: String.self)
        }

        fileprivate func deliver(_ text: String) { continuation.yield(text) }
        fileprivate func ended() { continuation.finish() }

        /// The next payload from the client, or nil once it closed (a 10 s deadline guards tests).
        func receive() async -> GatewayPayload? {
            let stream = inbound
            return await withTaskGroup(of: GatewayPayload?.self) { group in
                group.addTask {
                    for await text in stream {
                        return try? JSONLine.decode(GatewayPayload.self, from: text)
                    }
                    return nil
                }
                group.addTask {
                    try? await Task.sleep(for: .seconds(10))
                    return nil
                }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
        }

        func send(_ payload: GatewayPayload) {
            let text = String((try? JSONLine.encode(payload)) ?? "{}").dropLast()
            let frame = WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: String(text)))
            channel.writeAndFlush(frame, promise: nil)
        }

        /// Closes with a Gateway close code, as Discord does.
        func close(code: UInt16) {
            var data = ByteBuffer()
            data.writeInteger(code)
            channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)).whenComplete { _ in
                self.channel.close(promise: nil)
            }
        }
    }

    typealias Script = @Sendable (Connection, Int) async -> Void

    private let channel: any Channel
    let port: Int
    var url: String { "ws://127.0.0.1:\(port)/" }

    init(script: @escaping Script) async throws {
        let count = Mutex(0)
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: 1 << 24,
            shouldUpgrade: { channel, _ in channel.eventLoop.makeSucceededFuture(HTTPHeaders()) },
            upgradePipelineHandler: { channel, head in
                let connection = Connection(path: head.uri, channel: channel)
                let index = count.withLock { value in defer { value += 1 }; return value }
                Task { await script(connection, index) }
                return channel.pipeline.addHandler(FrameHandler(connection: connection))
            }
        )
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline(
                    withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in })
                )
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress?.port ?? 0
    }

    func close() async throws {
        try await channel.close()
    }

    private final class FrameHandler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = WebSocketFrame
        typealias OutboundOut = WebSocketFrame

        let connection: Connection
        var partial = ""

        init(connection: Connection) { self.connection = connection }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            switch frame.opcode {
            case .text, .continuation:
                partial += String(buffer: frame.unmaskedData)
                if frame.fin {
                    connection.deliver(partial)
                    partial = ""
                }
            case .connectionClose:
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: frame.unmaskedData)))
                    .whenComplete { _ in context.close(promise: nil) }
            case .ping:
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
            default:
                break
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            connection.ended()
        }
    }
}
