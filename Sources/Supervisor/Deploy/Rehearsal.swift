import AsyncHTTPClient
import FoundationEssentials
import Glibc
import IPC
import Logging
import NIOCore

/// The staging rehearsal of a release, before a deploy touches production: the new release's own
/// supervisor runs on a copy of the database (the `pre-deploy` backup) in a scratch data
/// directory, in sandbox mode, with its own sockets, no NOTIFY_SOCKET, no webhook, no token. It
/// must apply its migrations, reach ready with its start-up checks passed, answer a burst of
/// sandbox traffic (joins, messages, `/verification setup` and Verify presses, `/rank` and
/// `/leaderboard`) without an error for `duration`, and pass one health run. Nothing of production is written: not the live database, sockets or logs,
/// and not Discord.
struct Rehearsal: Sendable {
    struct Report: Codable, Sendable, Equatable {
        var ok: Bool
        var release: String
        /// What went wrong, in words; nil when the rehearsal passed.
        var cause: String?
        var migrationsApplied: [String]
        var readyMs: Int?
        var startupChecks: [HealthStatus.Check]
        var health: HealthStatus?
        var traffic: String
        var errors: [String]
        /// Where the rehearsal's logs are kept when it failed.
        var logs: String?

        var summary: String {
            var lines = ["rehearsal of \(ReleaseLinks.version(of: release)): \(ok ? "passed" : "FAILED: \(cause ?? "")")"]
            lines.append("  migrations applied: \(migrationsApplied.isEmpty ? "none" : migrationsApplied.joined(separator: ", "))")
            if let readyMs { lines.append("  ready in \(readyMs) ms") }
            for check in startupChecks where check.status != .ok { lines.append("  start-up \(check.name): \(check.status.rawValue): \(check.detail)") }
            if let health { lines.append("  health \(health.status.rawValue)" + health.checks.filter { $0.status != .ok }.map { "; \($0.name): \($0.detail)" }.joined()) }
            lines.append("  traffic: \(traffic)")
            for error in errors.prefix(5) { lines.append("  error: \(error)") }
            if let logs { lines.append("  logs kept in \(logs)") }
            return lines.joined(separator: "\n")
        }
    }

    struct Failure: Error {
        var cause: String
    }

    let release: String
    let database: String
    let scratch: String
    let readyTimeout: Duration
    let duration: Duration
    let logger: Logger

    func run() async -> Report {
        var report = Report(ok: false, release: release, cause: nil, migrationsApplied: [], readyMs: nil, startupChecks: [], health: nil, traffic: "none", errors: [], logs: nil)
        let data = scratch + "/data"
        try? FileManager.default.removeItem(atPath: scratch)
        var running: Program.Running?
        do {
            try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: database, toPath: data + "/bot.sqlite")
            let config: JSONValue = .object([
                "dataDir": .string(data),
                "worker": .object([
                    "executable": .string(release + "/bin/bot-worker"), "heartbeatIntervalSeconds": .integer(1),
                    "heartbeatTimeoutSeconds": .integer(10), "stopGraceSeconds": .integer(5),
                ]),
                "discord": .object(["mode": .string("sandbox")]),
                "sandbox": .object(["activityPerMinute": .integer(0), "members": .integer(20)]),
                "backup": .object(["locations": .array([.string(scratch + "/backups")])]),
                "health": .object(["intervalSeconds": .integer(86400)]),
                "deploy": .object(["root": .string(scratch)]),
            ])
            try JSONLine.encode(config).write(toFile: scratch + "/config.json", atomically: true, encoding: .utf8)
            let started = ContinuousClock.now
            let supervisor = try await Program.start(release + "/bin/bot-supervisor", ["run", "--config", scratch + "/config.json"])
            running = supervisor
            let client = ControlClient(socketPath: data + "/run/supervisor.sock", timeoutSeconds: 10)

            // Ready, with its start-up checks passed.
            var snapshot: StatusSnapshot?
            while ContinuousClock.now - started < readyTimeout {
                if let status = try? await BlockingPool.shared.run("rehearsal status", deadline: .seconds(15), { try client.send(ControlRequest(cmd: .status), expecting: StatusSnapshot.self) }) {
                    snapshot = status
                    if status.worker.state == .ready, status.worker.discord?.gatewayState == "connected" { break }
                    if [.failed, .crashLoop, .backoff].contains(status.worker.state) {
                        throw Failure(cause: "the worker is \(status.worker.state.rawValue): \(status.worker.lastExit?.reason ?? "no exit recorded")" + (status.worker.detail.map { " (\($0))" } ?? ""))
                    }
                }
                if let done = await Self.finished(supervisor) {
                    throw Failure(cause: "the release's supervisor exited (\(done.status)): \(done.output.suffix(500))")
                }
                try await Task.sleep(for: .milliseconds(200))
            }
            guard let ready = snapshot, ready.worker.state == .ready else {
                throw Failure(cause: "not ready within \(WorkerStateMachine.seconds(readyTimeout)) (worker \(snapshot?.worker.state.rawValue ?? "not started"))")
            }
            report.readyMs = ready.worker.lastStartupMs
            report.startupChecks = ready.worker.startup?.checks ?? []
            report.migrationsApplied = Self.migrationsApplied(logs: data + "/logs/database.log")
            if let failed = ready.worker.startup?.checks.first(where: { $0.status == .critical }) {
                throw Failure(cause: "start-up check \(failed.name) failed: \(failed.detail)")
            }

            // Traffic through the sandbox.
            guard let sandbox = ready.worker.discord?.sandboxURL else { throw Failure(cause: "the worker reports no sandbox") }
            report.traffic = try await traffic(sandbox: sandbox)

            // One health run, once its first backup exists.
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline {
                let status = try? await BlockingPool.shared.run("rehearsal status", deadline: .seconds(15)) { try client.send(ControlRequest(cmd: .status), expecting: StatusSnapshot.self) }
                if (status?.backups?.count ?? 0) >= 1, status?.operation == nil { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            let line = try await BlockingPool.shared.run("rehearsal health", deadline: .seconds(120)) { try client.exchange(try JSONLine.encode(ControlRequest(cmd: .health))) }
            let health = try JSONLine.decode(ControlResponse<HealthStatus>.self, from: line).result
            report.health = health
            if let critical = health?.checks.first(where: { $0.status == .critical }) {
                throw Failure(cause: "health check \(critical.name) is critical: \(critical.detail)")
            }
            let final = try await BlockingPool.shared.run("rehearsal status", deadline: .seconds(15)) { try client.send(ControlRequest(cmd: .status), expecting: StatusSnapshot.self) }
            if let events = final.worker.events, events.failed > 0 || events.commandsFailed > 0 {
                throw Failure(cause: "\(events.failed) event failures and \(events.commandsFailed) failed commands during the traffic")
            }
            if final.worker.restarts > 0 {
                throw Failure(cause: "the worker restarted during the rehearsal (\(final.worker.lastExit?.reason ?? "unknown"))")
            }
            report.ok = true
        } catch let failure as Failure {
            report.cause = failure.cause
        } catch {
            report.cause = "\(error)"
        }
        report.errors = Self.errorLines(data + "/logs/errors.log")
        if let running {
            // Its supervisor stops its worker on SIGTERM (within the worker's stopGraceSeconds, 5).
            _ = await running.stop(grace: .seconds(20))
        }
        if report.ok {
            try? FileManager.default.removeItem(atPath: scratch)
        } else {
            report.logs = data + "/logs"
        }
        return report
    }

    /// Its result once it has exited (and been reaped by its own waiting thread), else nil.
    private static func finished(_ running: Program.Running) async -> Program.Result? {
        running.process.exitStatus == nil ? nil : await running.result()
    }

    /// Members join and chat, and a member runs slash commands; every command must be answered
    /// without an error.
    private func traffic(sandbox: String) async throws -> String {
        let joined = try await Self.post(sandbox + "/sandbox/join", .object(["count": .integer(3), "accountAgeDays": .integer(400)]))
        let members = joined["members"]?.arrayValue.compactMap { $0["user"]?["id"]?.stringValue } ?? []
        guard let member = members.first else { throw Failure(cause: "the sandbox did not add members") }
        var messages = 0
        var commands = 0
        var presses = 0
        // An admin sets verification up (in the rehearsal's copy only), then members press Verify.
        let state = try await Self.get(sandbox + "/sandbox/state")
        let roles = Dictionary((state["guild"]?["roles"]?.arrayValue ?? []).compactMap { role in
            role["name"]?.stringValue.flatMap { name in role["id"]?.stringValue.map { (name, $0) } }
        }, uniquingKeysWith: { first, _ in first })
        let channels = Dictionary((state["guild"]?["channels"]?.arrayValue ?? []).compactMap { channel in
            channel["name"]?.stringValue.flatMap { name in channel["id"]?.stringValue.map { (name, $0) } }
        }, uniquingKeysWith: { first, _ in first })
        let owner = (state["guild"]?["members"]?.arrayValue ?? []).first { $0["roles"]?.arrayValue.contains(.string(roles["Owner"] ?? "-")) == true }?["user"]?["id"]?.stringValue
        if let owner, let verify = channels["verify"], let verified = roles["Verified"] {
            let setup = try await command(sandbox: sandbox, user: owner, name: "verification", options: [.object([
                "name": .string("setup"), "type": .integer(1), "options": .array([
                    .object(["name": .string("channel"), "type": .integer(7), "value": .string(verify)]),
                    .object(["name": .string("verified_role"), "type": .integer(8), "value": .string(verified)]),
                ]),
            ])])
            commands += 1
            for user in members {
                let press = try await Self.post(sandbox + "/sandbox/interaction", .object([
                    "user": .string(user), "kind": .string("button"), "customID": .string("verification:verify"),
                ]))
                guard let id = press["id"]?.stringValue else { throw Failure(cause: "the sandbox did not create the button press") }
                let answer = try await Self.answer(sandbox: sandbox, interaction: id)
                if answer.contains("Something went wrong") || answer.contains("not available") {
                    throw Failure(cause: "the Verify button failed: \(answer) (after /verification setup answered: \(setup))")
                }
                presses += 1
            }
        }
        let end = ContinuousClock.now + duration
        repeat {
            for user in members {
                _ = try await Self.post(sandbox + "/sandbox/message", .object(["user": .string(user), "content": .string("rehearsal message \(messages)")]))
                messages += 1
            }
            for name in ["rank", "leaderboard"] {
                _ = try await command(sandbox: sandbox, user: member, name: name, options: [])
                commands += 1
            }
            try await Task.sleep(for: .milliseconds(500))
        } while ContinuousClock.now < end
        return "\(members.count) joins, \(messages) messages, \(commands) slash commands answered, \(presses) Verify presses"
    }

    /// Runs slash command `/name` as `user`; its answer, or a failure when it was an error.
    private func command(sandbox: String, user: String, name: String, options: [JSONValue]) async throws -> String {
        let interaction = try await Self.post(sandbox + "/sandbox/interaction", .object([
            "user": .string(user), "kind": .string("command"), "name": .string(name), "options": .array(options),
        ]))
        guard let id = interaction["id"]?.stringValue else { throw Failure(cause: "the sandbox did not create the interaction") }
        let answer = try await Self.answer(sandbox: sandbox, interaction: id)
        if answer.contains("Something went wrong") || answer.contains("not available") {
            throw Failure(cause: "/\(name) failed: \(answer)")
        }
        return answer
    }

    private static func answer(sandbox: String, interaction: String) async throws -> String {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let state = try await get(sandbox + "/sandbox/interactions/" + interaction)
            if let first = state["responses"]?.arrayValue.first {
                let followUp = state["followUps"]?.arrayValue.first?["body"]?["content"]?.stringValue
                return first["data"]?["content"]?.stringValue ?? followUp ?? "(deferred)"
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw Failure(cause: "a slash command was not answered within 10 s")
    }

    private static func post(_ url: String, _ body: JSONValue) async throws -> JSONValue {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: try JSONLine.encode(body)))
        return try await send(request)
    }

    private static func get(_ url: String) async throws -> JSONValue {
        try await send(HTTPClientRequest(url: url))
    }

    private static func send(_ request: HTTPClientRequest) async throws -> JSONValue {
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 16 << 20)
        return try JSONLine.decode(JSONValue.self, from: String(buffer: body))
    }

    /// The migrations the rehearsal's worker applied, from its database.log.
    static func migrationsApplied(logs path: String) -> [String] {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line -> [String]? in
            guard line.contains("\"migrations applied\""), let applied = LogLine.field("applied", in: String(line)) else { return nil }
            return applied.split(separator: ",").map(String.init)
        }.flatMap { $0 }
    }

    static func errorLines(_ path: String) -> [String] {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(10).map { line in
            let message = LogLine.field("message", in: String(line)) ?? String(line.prefix(200))
            let detail = LogLine.field("error", in: String(line)) ?? LogLine.field("reason", in: String(line))
            return message + (detail.map { ": \($0)" } ?? "")
        }
    }
}
