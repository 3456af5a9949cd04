import IPC
import Logging
import Synchronization
import TestSupport
import Testing

@testable import BotWorker

/// The Gateway client against a scripted server speaking the Gateway protocol over a real
/// WebSocket on loopback.
@Suite struct GatewayClientTests {
    let identity = GatewaySession.Identity(token: Secret("gateway-token"), intents: 515, shard: nil)

    func hello(_ ms: Int) -> GatewayPayload { GatewayPayload(op: 10, d: .object(["heartbeat_interval": .integer(ms)])) }

    /// READY, with `padding` bytes of filler in a field the client does not know.
    func ready(resumeURL: String, padding: Int = 0) -> GatewayPayload {
        GatewayPayload(op: 0, d: .object([
            "v": .integer(10), "session_id": .string("session-1"), "resume_gateway_url": .string(resumeURL),
            "guilds": .array([.object(["id": .string("1"), "unavailable": .bool(true)])]),
            "x_padding": .string(String(repeating: "x", count: padding)),
        ]), s: 1, t: "READY")
    }

    /// Runs the client until it throws (a fatal close code ends every test).
    func run(_ client: GatewayClient) async -> (any Error)? {
        await withTaskGroup(of: (any Error)?.self) { group in
            group.addTask {
                do { try await client.run(); return nil } catch { return error }
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(30))
                return SupervisorHarnessTimeout()
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    struct SupervisorHarnessTimeout: Error {}

    @Test func identifiesHeartbeatsWithJitterReadsA1MiBReadyAndStopsOnAFatalCode() async throws {
        let observed = Mutex<[String]>([])
        let server = try await ScriptedGatewayServer { connection, _ in
            connection.send(hello(400))
            let helloSent = ContinuousClock.now
            guard let identify = await connection.receive(), case .object(let d) = identify.d else { return }
            observed.withLock { $0.append("identify op \(identify.op) token \(d["token"]?.stringValue ?? "") intents \(d["intents"]?.intValue ?? 0)") }
            // READY is far over the 16 KiB default frame size: here just over 1 MiB.
            connection.send(ready(resumeURL: "ws://127.0.0.1:1/", padding: 1 << 20))
            guard let beat = await connection.receive() else { return }
            let waited = ContinuousClock.now - helloSent
            // First beat at interval × jitter (0.5): 200 ms after hello, not at once; it carries
            // the last sequence, 1 if READY was read by then, else null.
            let sequence = beat.d == .integer(1) || beat.d == nil || beat.d == .null
            observed.withLock { $0.append("heartbeat op \(beat.op) sequence \(sequence ? "ok" : String(describing: beat.d)) after-jitter \(waited >= .milliseconds(190) && waited < .seconds(5))") }
            connection.send(GatewayPayload(op: 11))
            connection.close(code: 4004)
        }
        let dispatched = Mutex<[String]>([])
        let client = GatewayClient(identity: identity, gatewayURL: server.url, logger: Logger(label: "test"), jitter: { 0.5 }) { dispatch in
            dispatched.withLock { $0.append(dispatch.type) }
        }
        let error = await run(client)
        #expect((error as? GatewayClient.Fatal)?.description.contains("4004") == true)
        #expect(observed.withLock { $0 } == ["identify op 2 token gateway-token intents 515", "heartbeat op 1 sequence ok after-jitter true"])
        #expect(dispatched.withLock { $0 } == ["READY"])
        try await server.close()
    }

    @Test func aZombieConnectionResumesAndAnInvalidSessionIdentifiesAfresh() async throws {
        let observed = Mutex<[String]>([])
        let serverBox = Mutex<String>("")
        let server = try await ScriptedGatewayServer { connection, index in
            switch index {
            case 0:
                connection.send(hello(150))
                _ = await connection.receive()  // identify
                connection.send(ready(resumeURL: serverBox.withLock { $0 } + "resume"))
                connection.send(GatewayPayload(op: 0, d: .object(["id": .string("5")]), s: 2, t: "MESSAGE_CREATE"))
                connection.send(GatewayPayload(op: 0, d: .object(["whatever": .bool(true)]), s: 3, t: "SOMETHING_DISCORD_ADDED_LATER"))
                // Heartbeats are never acknowledged: the client must call this a zombie and close.
                while let payload = await connection.receive() {
                    observed.withLock { $0.append("0: op \(payload.op)") }
                }
            case 1:
                observed.withLock { $0.append("1: path \(connection.path)") }
                connection.send(hello(10_000))
                guard let resume = await connection.receive(), case .object(let d) = resume.d else { return }
                observed.withLock { $0.append("1: op \(resume.op) session \(d["session_id"]?.stringValue ?? "") seq \(d["seq"]?.intValue ?? -1)") }
                connection.send(GatewayPayload(op: 9, d: .bool(false)))
                while await connection.receive() != nil {}
            default:
                connection.send(hello(10_000))
                guard let identify = await connection.receive() else { return }
                observed.withLock { $0.append("2: op \(identify.op)") }
                connection.close(code: 4014)
            }
        }
        serverBox.withLock { $0 = server.url }
        let dispatched = Mutex<[String]>([])
        let client = GatewayClient(identity: identity, gatewayURL: server.url, logger: Logger(label: "test"), jitter: { 0 }) { dispatch in
            dispatched.withLock { $0.append(dispatch.type) }
        }
        let error = await run(client)
        #expect((error as? GatewayClient.Fatal)?.description.contains("4014") == true)
        let lines = observed.withLock { $0 }
        #expect(lines.filter { $0.hasPrefix("0: op 1") }.count >= 1)  // heartbeats, unanswered
        #expect(lines.contains("1: path /resume?v=10&encoding=json"))
        #expect(lines.contains("1: op 6 session session-1 seq 3"))
        #expect(lines.contains("2: op 2"))
        #expect(dispatched.withLock { $0 } == ["READY", "MESSAGE_CREATE", "SOMETHING_DISCORD_ADDED_LATER"])
        try await server.close()
    }

    /// A connection's task group must not grow with its heartbeats (a Gateway connection lasts
    /// days): fifty heartbeats, each acknowledged, cost the same two children (reader and timer)
    /// per connection as one. Every 100 ms, under the 120-sends-a-minute limit. On a loaded
    /// machine an acknowledgement may come after the next beat is due: the client then rightly
    /// calls the connection a zombie and resumes on a new one, which the server scripts alike.
    /// So the children are counted per connection served, not assumed to be one connection's.
    @Test func heartbeatsDoNotAddChildTasks() async throws {
        let beats = 50
        let received = Mutex(0)
        let serverURL = Mutex("")
        let server = try await ScriptedGatewayServer { connection, _ in
            connection.send(hello(100))
            guard await connection.receive() != nil else { return }  // identify (or resume, after a zombie)
            connection.send(ready(resumeURL: serverURL.withLock { $0 }))
            while received.withLock({ $0 }) < beats, let payload = await connection.receive() {
                guard payload.op == 1 else { continue }
                received.withLock { $0 += 1 }
                connection.send(GatewayPayload(op: 11))
            }
            // Ended by the client (a zombie connection), the next connection goes on counting.
            if received.withLock({ $0 }) >= beats { connection.close(code: 4004) }
        }
        serverURL.withLock { $0 = server.url }
        let client = GatewayClient(identity: identity, gatewayURL: server.url, logger: Logger(label: "test"), jitter: { 0 }) { _ in }
        let error = await run(client)
        #expect((error as? GatewayClient.Fatal)?.description.contains("4004") == true)
        #expect(received.withLock { $0 } == beats)
        #expect(await client.heartbeatsDue >= beats)
        let connections = await client.connectionsServed
        #expect(connections >= 1)
        #expect(await client.childTasksStarted == 2 * connections)
        try await server.close()
    }
}
