import IPC
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// The one listening socket: HTTP/1.1 for REST and the control API, upgraded to WebSocket (frames
/// up to 16 MiB, continuations aggregated) for the Gateway on any path.
struct SandboxServer: Sendable {
    static let maximumFrame = 1 << 24

    let sandbox: Sandbox
    /// Every REST exchange served, shared by the connections.
    let exchanges = RESTExchangeLog()

    /// Binds and returns the listening channel; the port is known to `sandbox` from then on.
    func bind(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> any Channel {
        let sandbox = sandbox, exchanges = exchanges
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: Self.maximumFrame,
            shouldUpgrade: { channel, _ in channel.eventLoop.makeSucceededFuture(HTTPHeaders()) },
            upgradePipelineHandler: { channel, head in
                let id = sandbox.withWorld { $0.nextConnectionID() }
                let connection = GatewayConnection(id: id, channel: channel)
                sandbox.withWorld { $0.connections[id] = connection }
                let query = HTTPRequest(head: head, body: ByteBuffer()).query
                return channel.eventLoop.makeCompletedFuture {
                    let handlers = channel.pipeline.syncOperations
                    try handlers.addHandler(NIOWebSocketFrameAggregator(
                        minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 1 << 16, maxAccumulatedFrameSize: Self.maximumFrame
                    ))
                    try handlers.addHandler(GatewayHandler(sandbox: sandbox, connection: connection, query: query))
                }
            }
        )
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 256 << 10, high: 1 << 20))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withServerUpgrade: (upgraders: [upgrader], completionHandler: { context in
                            context.pipeline.removeHandler(name: "sandbox-http", promise: nil)
                        })
                    )
                    try channel.pipeline.syncOperations.addHandler(HTTPHandler(sandbox: sandbox, exchanges: exchanges), name: "sandbox-http")
                }
            }
            .bind(host: sandbox.configuration.host, port: sandbox.configuration.port)
            .get()
        sandbox.bound(port: channel.localAddress?.port ?? 0)
        return channel
    }
}
