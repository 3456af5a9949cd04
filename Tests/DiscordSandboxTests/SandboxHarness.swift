import AsyncHTTPClient
import FoundationEssentials
import IPC
import Logging
import NIOCore
import NIOHTTP1
import NIOWebSocket
import WSClient

@testable import DiscordSandbox

/// A sandbox started in-process on an ephemeral port, with HTTP helpers for its REST and
/// control APIs.
final class SandboxHarness: Sendable {
    let sandbox: Sandbox
    let channel: any Channel
    static let token = "test-token"

    /// `answerWithin`: the interactions' answer deadline (Discord's 3 s by default).
    /// `configure`: any other setting (guilds, shard limits).
    init(
        members: Int = 12, disallowedIntents: Int = 0, answerWithin: UInt64 = InteractionRecord.answerWithin,
        configure: (inout SandboxConfiguration) -> Void = { _ in }
    ) async throws {
        var configuration = SandboxConfiguration(
            token: Self.token, members: members, activityPerMinute: 0, disallowedIntents: disallowedIntents, logging: false
        )
        configuration.interactionAnswerMilliseconds = answerWithin
        configure(&configuration)
        sandbox = Sandbox(configuration: configuration)
        channel = try await SandboxServer(sandbox: sandbox).bind()
    }

    var port: Int { sandbox.port }
    var guildID: String { String(sandbox.withWorld { $0.guild.id }) }

    func shutdown() async throws {
        try await channel.close()
    }

    struct Response: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var json: JSONValue?
    }

    /// A REST call under /api/v10, with the bot token unless `token` says otherwise ("" for none).
    func rest(_ method: HTTPMethod, _ path: String, body: JSONValue? = nil, token: String? = SandboxHarness.token, headers: [(String, String)] = []) async throws -> Response {
        var all = headers
        if let token, !token.isEmpty { all.append(("Authorization", "Bot " + token)) }
        return try await http(method, "/api/v10" + path, body: body, headers: all)
    }

    func control(_ method: HTTPMethod, _ path: String, body: JSONValue? = nil) async throws -> Response {
        try await http(method, "/sandbox" + path, body: body, headers: [])
    }

    func http(_ method: HTTPMethod, _ path: String, body: JSONValue?, headers: [(String, String)]) async throws -> Response {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)" + path)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body.jsonText))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        return Response(status: Int(response.status.code), headers: response.headers, json: JSONValue.parse(bytes))
    }

    /// `shard`: `[id, count]` in the Identify.
    func identifyPayload(token: String = SandboxHarness.token, intents: Int = 33283, shard: (Int, Int)? = nil) -> String {
        let shardField = shard.map { ",\"shard\":[\($0.0),\($0.1)]" } ?? ""
        return "{\"op\":2,\"d\":{\"token\":\"\(token)\",\"intents\":\(intents),\"properties\":{\"os\":\"linux\",\"browser\":\"test\",\"device\":\"test\"}\(shardField)}}"
    }
}

/// A Gateway client for tests: what arrives is queued in an inbox read with a deadline.
final class TestGateway: Sendable {
    enum Event: Sendable {
        case payload(JSONValue)
        case closed(Int?)
    }

    enum Outgoing: Sendable {
        case text(String)
        case close(UInt16)
    }

    let inbox = Inbox()
    private let outgoing: AsyncStream<Outgoing>.Continuation
    private let task: Task<Void, Never>

    /// `brief`: dispatch types kept as `{"op","t","s","d":{"id"}}` only, without decoding their
    /// `d` (thousands of GUILD_CREATEs take tens of seconds to decode in a debug build).
    init(url: String, brief: Set<String> = []) {
        let (stream, continuation) = AsyncStream.makeStream(of: Outgoing.self)
        outgoing = continuation
        let inbox = inbox
        task = Task {
            do {
                let close = try await WebSocketClient.connect(
                    url: url, configuration: .init(maxFrameSize: 1 << 24), logger: Logger(label: "test-gateway")
                ) { inbound, outbound, _ in
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            for await item in stream {
                                switch item {
                                case .text(let text): try await outbound.write(.text(text))
                                case .close(let code): try await outbound.close(.unknown(code), reason: nil)
                                }
                            }
                        }
                        for try await message in inbound.messages(maxSize: 1 << 24) {
                            guard case .text(let text) = message else { continue }
                            if !brief.isEmpty, let summary = Self.summary(text, types: brief) {
                                await inbox.push(.payload(summary))
                            } else if let value = JSONValue.parse(ByteBuffer(string: text)) {
                                await inbox.push(.payload(value))
                            }
                        }
                        group.cancelAll()
                    }
                }
                await inbox.push(.closed(close.map { Self.number($0.closeCode) }))
            } catch {
                await inbox.push(.closed(nil))
            }
        }
    }

    static func connect(_ harness: SandboxHarness, path: String = "/gateway?v=10&encoding=json", brief: Set<String> = []) -> TestGateway {
        TestGateway(url: "ws://127.0.0.1:\(harness.port)" + path, brief: brief)
    }

    /// A dispatch of one of `types` as `{"op":0,"t","s","d":{"id"}}`: the sandbox writes
    /// `{"op":0,"t":"TYPE","s":N,"d":{…}}`, and the `id` is the one at the top of `d`.
    static func summary(_ text: String, types: Set<String>) -> JSONValue? {
        let bytes = Array(text.utf8)
        let head = Array("{\"op\":0,\"t\":\"".utf8)
        guard bytes.starts(with: head), let typeEnd = bytes[head.count...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
        let type = String(decoding: bytes[head.count..<typeEnd], as: UTF8.self)
        guard types.contains(type) else { return nil }
        var position = typeEnd + 6  // past `","s":`
        var sequence = 0
        while position < bytes.count, let digit = Int(exactly: bytes[position]).map({ $0 - 48 }), (0...9).contains(digit) {
            sequence = sequence * 10 + digit
            position += 1
        }
        position += 5  // `,"d":`
        // The `"id"` key at depth 1 of `d`.
        var depth = 0
        var inString = false
        var id: String?
        var index = position
        while index < bytes.count, id == nil {
            let byte = bytes[index]
            if inString {
                if byte == UInt8(ascii: "\\") { index += 1 } else if byte == UInt8(ascii: "\"") { inString = false }
            } else if byte == UInt8(ascii: "{") || byte == UInt8(ascii: "[") {
                depth += 1
            } else if byte == UInt8(ascii: "}") || byte == UInt8(ascii: "]") {
                depth -= 1
            } else if byte == UInt8(ascii: "\"") {
                if depth == 1, bytes[index...].starts(with: Array("\"id\":\"".utf8)) {
                    let start = index + 6
                    let end = bytes[start...].firstIndex(of: UInt8(ascii: "\"")) ?? start
                    id = String(decoding: bytes[start..<end], as: UTF8.self)
                } else {
                    inString = true
                }
            }
            index += 1
        }
        return .object([
            "op": .integer(0), "t": .string(type), "s": .integer(sequence),
            "d": .object(["id": id.map(JSONValue.string) ?? .null]),
        ])
    }

    func send(_ text: String) { outgoing.yield(.text(text)) }
    func close(_ code: UInt16) { outgoing.yield(.close(code)) }
    func stop() { task.cancel() }

    /// The next payload, skipping none; nil on close or after the deadline.
    func next(within seconds: Double = 10) async -> JSONValue? {
        if case .payload(let value) = await inbox.next(within: seconds) { return value }
        return nil
    }

    /// The next dispatch of `type`, skipping other payloads.
    func dispatch(_ type: String, within seconds: Double = 10) async -> JSONValue? {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            guard let payload = await next(within: Double((deadline - ContinuousClock.now).components.seconds) + 1) else { return nil }
            if payload["t"]?.stringValue == type { return payload }
        }
        return nil
    }

    /// The close code, skipping payloads until the connection ends.
    func closeCode(within seconds: Double = 10) async -> Int?? {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            switch await inbox.next(within: seconds) {
            case .closed(let code): return .some(code)
            case .payload: continue
            case nil: return nil
            }
        }
        return nil
    }

    static func number(_ code: WebSocketErrorCode) -> Int {
        switch code {
        case .normalClosure: 1000
        case .goingAway: 1001
        case .protocolError: 1002
        case .unknown(let number): Int(number)
        default: -1
        }
    }
}

/// A queue with one reader that waits with a deadline.
actor Inbox {
    private var buffer: [TestGateway.Event] = []
    private var waiter: (generation: Int, continuation: CheckedContinuation<TestGateway.Event?, Never>)?
    private var generation = 0

    func push(_ event: TestGateway.Event) {
        if let waiter {
            self.waiter = nil
            waiter.continuation.resume(returning: event)
        } else {
            buffer.append(event)
        }
    }

    func next(within seconds: Double) async -> TestGateway.Event? {
        if !buffer.isEmpty { return buffer.removeFirst() }
        generation += 1
        let current = generation
        return await withCheckedContinuation { continuation in
            waiter = (current, continuation)
            Task {
                try? await Task.sleep(for: .seconds(seconds))
                self.expire(current)
            }
        }
    }

    private func expire(_ generation: Int) {
        guard let waiter, waiter.generation == generation else { return }
        self.waiter = nil
        waiter.continuation.resume(returning: nil)
    }
}
