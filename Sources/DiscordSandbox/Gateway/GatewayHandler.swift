import IPC
import NIOCore
import NIOWebSocket

/// Speaks the Gateway protocol on one WebSocket, as Discord does: Hello on open, heartbeats
/// acknowledged, Identify and Resume checked, and the close codes Discord uses for each mistake
/// (4001 unknown opcode, 4002 decode error or payload over 4096 bytes, 4003 not identified,
/// 4004 bad token, 4005 identified twice, 4008 over 120 payloads a minute, 4010 invalid shard,
/// 4011 a shard over the guilds-per-shard limit, 4012 bad version, 4013 invalid intents,
/// 4014 disallowed intents), and op 9 `false` for an Identify over `max_concurrency`.
final class GatewayHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    static let maximumPayload = 4096
    static let sendLimit = 120
    static let sendWindow: UInt64 = 60_000

    private let sandbox: Sandbox
    private let connection: GatewayConnection
    private let query: [String: String]
    private var identified = false
    /// The close code for a connection whose URL Discord would refuse (4012 version, 4002 encoding).
    private var refusal: UInt16?
    private var received: [UInt64] = []

    init(sandbox: Sandbox, connection: GatewayConnection, query: [String: String]) {
        self.sandbox = sandbox
        self.connection = connection
        self.query = query
    }

    func handlerAdded(context: ChannelHandlerContext) {
        sandbox.log("gateway connection opened", ["connection": .integer(connection.id)])
        sendOp(10, d: "{\"heartbeat_interval\":\(sandbox.configuration.heartbeatIntervalMilliseconds)}", context: context)
        // A bad version or encoding is refused at the client's first payload: closing right after the
        // upgrade can leave some clients (swift-websocket's among them) never reporting the close.
        if query["v"] != "10" {
            refusal = 4012
        } else if query["encoding"] != "json" || query["compress"] != nil {
            refusal = 4002
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            guard !connection.isClosing else { return }
            received(frame.unmaskedData, context: context)
        case .connectionClose:
            var data = frame.unmaskedData
            connection.clientCloseCode = data.readInteger(as: UInt16.self)
            if connection.isClosing { return }
            // Echo the close frame, then close the socket.
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: frame.unmaskedData)))
                .whenComplete { _ in channel.close(promise: nil) }
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        default:
            break
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        connection.wakeWriters()
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.wakeWriters()
        sandbox.gatewayClosed(connection)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func received(_ text: ByteBuffer, context: ChannelHandlerContext) {
        if let refusal { return close(refusal, "unsupported gateway version or encoding") }
        let now = DiscordTime.nowMilliseconds()
        received.removeAll { now - $0 >= Self.sendWindow }
        received.append(now)
        if received.count > Self.sendLimit { return close(4008, "rate limited") }
        guard text.readableBytes <= Self.maximumPayload else { return close(4002, "payload over 4096 bytes") }
        guard let payload = JSONValue.parse(text), let op = payload["op"]?.int else { return close(4002, "undecodable payload") }
        let d = payload["d"] ?? .null
        switch op {
        case 1:
            if sandbox.withWorld({ $0.gateway.acksEnabled }) { sendOp(11, d: "null", context: context) }
        case 2:
            // After op 9 `false` the session is gone and a new Identify is welcome.
            guard !identified || !sandbox.hasSession(connection) else { return close(4005, "already authenticated") }
            identify(d, context: context)
        case 6:
            guard !identified else { return close(4005, "already authenticated") }
            resume(d, context: context)
        case 3, 4, 8:
            guard identified else { return close(4003, "not authenticated") }
            if op == 8 { sandbox.requestGuildMembers(d, connection: connection) }
        default:
            close(4001, "unknown opcode")
        }
    }

    private func identify(_ d: JSONValue, context: ChannelHandlerContext) {
        guard case .string(var token) = d["token"], let intents = d["intents"]?.int,
              d["properties"] != nil
        else { return close(4002, "identify without token, intents or properties") }
        if token.hasPrefix("Bot ") { token.removeFirst(4) }
        guard token == sandbox.configuration.token else { return close(4004, "authentication failed") }
        guard intents >= 0, intents & ~GatewaySessions.Intent.known == 0 else { return close(4013, "invalid intents") }
        guard intents & sandbox.configuration.disallowedIntents == 0 else { return close(4014, "disallowed intents") }
        var shard: [Int]?
        if let value = d["shard"], value != .null {
            guard let pair = value.array?.compactMap(\.int), pair.count == 2, pair[1] >= 1, (0..<pair[1]).contains(pair[0]) else {
                return close(4010, "invalid shard")
            }
            shard = pair
        }
        switch sandbox.identify(connection: connection, intents: intents, shard: shard) {
        case .ready:
            identified = true
        case .shardingRequired:
            close(4011, "sharding required")
        case .rateLimited:
            // As Discord: op 9 `false`; the connection stays and may Identify again later.
            sendOp(9, d: "false", context: context)
        }
    }

    private func resume(_ d: JSONValue, context: ChannelHandlerContext) {
        guard case .string(var token) = d["token"], case .string(let sessionID) = d["session_id"] else {
            return close(4002, "resume without token or session_id")
        }
        if token.hasPrefix("Bot ") { token.removeFirst(4) }
        guard token == sandbox.configuration.token else { return close(4004, "authentication failed") }
        let sequence = d["seq"]?.int ?? 0
        if sandbox.resume(connection: connection, sessionID: sessionID, sequence: sequence) {
            identified = true
        } else {
            sendOp(9, d: "false", context: context)
        }
    }

    private func sendOp(_ op: Int, d: String, context: ChannelHandlerContext) {
        let text = "{\"op\":\(op),\"d\":\(d),\"s\":null,\"t\":null}"
        // Queued behind any dispatches already queued for this connection, like every send.
        connection.send(context.channel.allocator.buffer(string: text))
    }

    private func close(_ code: UInt16, _ reason: String) {
        sandbox.log("gateway closing connection", ["connection": .integer(connection.id), "code": .integer(Int(code)), "reason": .string(reason)])
        connection.closeOnLoop(code: code)
    }
}
