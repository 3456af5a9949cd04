/// Bad input for every message that crosses a socket: lines made by encoding real values, then
/// broken (bytes flipped, inserted, deleted, cut; keys removed or repeated; values of the wrong
/// type, huge numbers, long strings, invalid UTF-8, nesting ten thousand deep), and pure noise.
///
/// The defaults take a few seconds. To run longer, with a seed of your own:
///
///     FUZZ_ITERATIONS=1000000 FUZZ_SEED=$RANDOM swift test --filter Fuzz
///
/// A failure prints its seed and iteration; `FUZZ_SEED=… FUZZ_REPLAY=…` runs that input alone.

import FoundationEssentials
import IPC
import TestSupport
import Testing

@Suite struct DecoderFuzzTests {
    /// Every line must either decode or be refused with a one-line explanation, never trap.
    @Test(arguments: DecoderTarget.all)
    func mutatedLinesDecodeOrAreRefused(_ target: DecoderTarget) throws {
        let seeds = try target.seeds.map(FuzzJSON.init(parsing:))
        let fuzzer = Fuzzer("mutated \(target.name)", iterations: 1200)
        fuzzer.run { random in
            var tree = random.pick(seeds)
            var changes: [String] = []
            if random.chance(70) {
                for _ in 0...random.below(3) { changes.append("\(FuzzMutation.apply(to: &tree, &random))") }
            }
            var bytes = tree.bytes
            if changes.isEmpty || random.chance(30) {
                for _ in 0...random.below(4) { ByteMutator.mutate(&bytes, &random) }
                changes.append("bytes changed")
            }
            target.check(bytes, fuzzer, changes.joined(separator: "; "))
        }
    }

    /// Random bytes, and random text in JSON's alphabet.
    @Test(arguments: DecoderTarget.all)
    func noiseIsRefused(_ target: DecoderTarget) {
        let fuzzer = Fuzzer("noise as \(target.name)", iterations: 800)
        fuzzer.run { random in
            target.check(ByteMutator.noise(&random), fuzzer, "noise")
        }
    }

    /// No strict prefix of a line is a message (each is an unfinished object); the whole line is.
    @Test(arguments: DecoderTarget.all)
    func everyTruncationIsRefused(_ target: DecoderTarget) throws {
        let fuzzer = Fuzzer("truncated \(target.name)")
        for line in target.seeds.prefix(3) {
            let bytes = Array(line.utf8)
            for end in 0..<bytes.count - 1 {
                let outcome = target.check(Array(bytes[..<end]), fuzzer, "cut at \(end)")
                fuzzer.check(outcome != .decoded, "a line cut at byte \(end) of \(bytes.count) decoded")
            }
            fuzzer.check(target.check(bytes, fuzzer, "whole") == .decoded, "the whole line did not decode")
        }
    }

    /// Fixed inputs at the decoder's limits: nesting, size, repetition.
    @Test(arguments: DecoderTarget.all)
    func hostileLinesNeverTrap(_ target: DecoderTarget) {
        let fuzzer = Fuzzer("hostile \(target.name)")
        let deep = String(repeating: "[", count: 10_000)
        // The JSON decoder's nesting limit is 512; 513 `[` with nothing after them used to trap.
        let nearTheLimit = (510...514).flatMap { depth in
            let open = String(repeating: "[", count: depth)
            return [open, open + String(repeating: "]", count: depth), "{\"type\":" + open, "{\"cmd\":" + open + String(repeating: "]", count: depth) + "}"]
        }
        let lines = nearTheLimit + [
            "", " ", "\n", "null", "0", "\"\"", "[]", "{}", "{\"type\":null}", "{\"cmd\":null}", deep,
            deep + String(repeating: "]", count: 10_000), String(repeating: "{\"a\":", count: 10_000),
            "{\"type\":\"" + String(repeating: "x", count: 1 << 20) + "\"}",
            "{\"cmd\":\"" + String(repeating: "\\n", count: 100_000) + "\"}",
            "[" + String(repeating: "1", count: 100_000) + "]",
            "{" + Array(repeating: "\"type\":\"ready\"", count: 10_000).joined(separator: ",") + "}",
            "{\"type\":\"" + String(repeating: "\u{0}", count: 1000) + "\"}",
        ]
        for line in lines {
            target.check(Array(line.utf8), fuzzer, "hostile")
        }
    }
}

/// One decoder under test: its sample lines and the checks every input goes through.
struct DecoderTarget: Sendable, CustomTestStringConvertible {
    enum Outcome: Equatable { case decoded, refused }

    let name: String
    let seeds: [String]
    /// Decodes; when that works, encodes the value and decodes it again, and says what changed.
    private let roundTrip: @Sendable (String) throws -> String?
    private let decodeBytes: @Sendable (Data) throws -> Void

    var testDescription: String { name }

    static func of<T: Codable & Sendable>(_ samples: [T], same: @escaping @Sendable (T, T) -> Bool) -> DecoderTarget {
        DecoderTarget(
            name: "\(T.self)",
            seeds: samples.map { try! JSONLine.encode($0) },
            roundTrip: { line in
                let value = try JSONLine.decode(T.self, from: line)
                let again: T
                do {
                    again = try JSONLine.decode(T.self, from: JSONLine.encode(value))
                } catch {
                    return "decoded, but its encoding does not decode: \(JSONLine.explain(error))"
                }
                return same(value, again) ? nil : "decoded as \(value), which encodes and decodes as \(again)"
            },
            decodeBytes: { _ = try JSONDecoder().decode(T.self, from: $0) }
        )
    }

    static func of<T: Codable & Sendable & Equatable>(_ samples: [T]) -> DecoderTarget { of(samples, same: ==) }

    /// What the encoder writes of a response: `error` only when not ok.
    static func response<R: Codable & Sendable & Equatable>(_ samples: [ControlResponse<R>]) -> DecoderTarget {
        of(samples) { a, b in a.ok == b.ok && a.result == b.result && (a.ok || a.error == b.error) }
    }

    /// The properties: no trap; a refusal explained in one short line; a decoded value that
    /// survives encoding and decoding again. Lines come in as the framing hands them on (valid
    /// UTF-8); bytes that are not are also given to the JSON decoder as they are.
    @discardableResult
    func check(_ bytes: [UInt8], _ fuzzer: Fuzzer, _ how: @autoclosure () -> String) -> Outcome {
        fuzzer.feed(bytes)
        let line = String(decoding: bytes, as: UTF8.self)
        var outcome = Outcome.refused
        do {
            if let problem = try roundTrip(line) {
                fuzzer.check(false, "\(how()): \(problem)")
            }
            outcome = .decoded
        } catch {
            Self.checkExplanation(of: error, fuzzer, how())
        }
        if String(validating: bytes, as: UTF8.self) == nil {
            do {
                // Strings the decoder does not read are never checked: this may work.
                try decodeBytes(Data(bytes))
            } catch {
                Self.checkExplanation(of: error, fuzzer, how())
            }
        }
        return outcome
    }

    private static func checkExplanation(of error: any Error, _ fuzzer: Fuzzer, _ how: @autoclosure () -> String) {
        let explanation = JSONLine.explain(error)
        fuzzer.check(
            !explanation.isEmpty && !explanation.contains(where: \.isNewline) && explanation.count < 500,
            "\(how()): refused with an explanation that is not one short line (\(explanation.count) characters): \(explanation)"
        )
    }

    static let all: [DecoderTarget] = [
        .of(MessageSamples.controlRequests),
        .of(MessageSamples.workerMessages),
        .of(MessageSamples.supervisorMessages),
        .of(MessageSamples.snapshots),
        .response(MessageSamples.snapshots.map(ControlResponse.success) + [.failure(ErrorBody(code: "permission-denied", message: "no"))]),
        .response([ControlResponse.success(MessageSamples.health), .init(ok: false, result: MessageSamples.health, error: .badRequest("x"))]),
        .response([ControlResponse.success(ActionResult(message: "worker restarted", workerPid: 4242))]),
    ]
}

/// Values as the supervisor and the worker send them, every optional field filled in at least once.
enum MessageSamples {
    static let at = "2026-03-01T12:34:56.789Z"

    static let controlRequests: [ControlRequest] = ControlCommand.allCases.map { ControlRequest(cmd: $0) } + [
        ControlRequest(cmd: .restore, backup: "20260301T123456789Z-manual"),
        ControlRequest(cmd: .restore, at: at),
        ControlRequest(cmd: .deploy, release: "/opt/bot/releases/0.2.0", rehearseOnly: true),
    ]

    static let health = HealthStatus(status: .warn, lastRunAt: at, checks: [
        .init(name: "database", status: .ok, detail: "integrity ok"),
        .init(name: "disk", status: .warn, detail: "backups: 91% full"),
    ])

    static let journal = JournalReport(enabled: true, timeline: "t-20260301", sequence: 9_000_000_000, lastCommitAt: at, unjournaled: 0, locations: [
        .init(path: "/var/backups/bot", state: "ok", lastSequence: 9_000_000_000, lag: 0, sizeBytes: 1 << 20, segments: 3, error: nil),
        .init(path: "/mnt/offsite", state: "failed", lastSequence: 7, lag: 2, sizeBytes: 100, segments: 1, error: "write: No space left on device"),
    ])

    static let discord = DiscordReport(
        mode: "sandbox", gatewayState: "connected", latencyMs: 41, lastEventAgeMs: 1200, guilds: 1, sessionStartRemaining: 998,
        sessionStartTotal: 1000, identifiesLast24h: 2, nextIdentifyAt: at, restGlobalRemaining: 49, restInvalidRequests: 3,
        lastError: "HTTP 429 on PUT /guilds/{id}/members/{id}/roles/{id}", sandboxURL: "http://127.0.0.1:40123"
    )

    static let events = EventReport(received: 123_456, failed: 2, writesCommitted: 9000, writeLatencyP50Ms: 1.25, writeLatencyP99Ms: 38.5, commandsSucceeded: 17, commandsFailed: 1)

    static let startup = StartupReport(at: at, checks: [
        .init(name: "database", status: .ok, detail: "opened, took a write"),
        .init(name: "feature xp", status: .critical, detail: "table xp_members missing"),
    ])

    static let workerMessages: [WorkerMessage] = [
        .hello(.init(pid: 4242, version: "0.1.0", logSystems: ["xp", "verification", "role_connections"])),
        .hello(.init(pid: 4243, version: "0.1.0")),
        .ready,
        .startupReport(startup),
        .heartbeat(.init(sequence: 7, healthy: false, detail: "gateway reconnecting", rssBytes: 50_000_000, discord: discord, events: events, journal: journal)),
        .heartbeat(.init(sequence: 8)),
        .fatal(message: "Discord rejected the token (close code 4004)"),
        .backupRequest(.init(id: RequestID(1), reason: .preMigration, migrations: ["v2-xp", "v3-rules"])),
        .corruption(detail: "SQLite error 11: database disk image is malformed"),
        .backupRequest(.init(id: RequestID(2), reason: .postMigration)),
        .backupRequest(.init(id: RequestID(9_000_000), reason: .journal, detail: "the journal in /b2 takes writes again")),
    ]

    static let supervisorMessages: [SupervisorMessage] = [
        .welcome(.init(
            heartbeatIntervalMs: 5000, databasePath: "/var/lib/bot/bot.sqlite",
            discord: DiscordSettings(mode: .discord, token: Secret("MTA.x.y"), gatewayURL: "wss://gateway.discord.gg", apiBaseURL: "https://discord.com/api/v10", guildIDs: ["1100000000000000003"]),
            journal: JournalSettings(enabled: true, locations: ["/b1", "/b2"], segmentMaxBytes: 1 << 20)
        )),
        .welcome(.init(heartbeatIntervalMs: 1000, databasePath: "/d/bot.sqlite", discord: DiscordSettings(mode: .sandbox), journal: JournalSettings(enabled: false, locations: [], segmentMaxBytes: 0))),
        .shutdown(reason: "restart requested\nby operator"),
        .error(ErrorBody(code: "bad-request", message: "not valid JSON")),
        .backupReply(.init(id: RequestID(2), ok: false, message: "disk full")),
        .backupReply(.init(id: RequestID(1), ok: true, message: "backup 20261126T040000000Z-pre-migration taken")),
        .snapshotTaken(sequence: 42),
    ]

    static let snapshots: [StatusSnapshot] = [
        StatusSnapshot(
            supervisor: SupervisorStatus(pid: 1, version: "0.1.0", startedAt: at, state: "running", rssBytes: 30_000_000),
            worker: WorkerStatus(
                pid: 4242, state: .crashLoop, restarts: 5, startedAt: at, lastHeartbeatAgeMs: 900,
                lastExit: LastExit(code: nil, signal: 9, reason: "killed", at: at), lastStartupMs: 800, nextStartAt: at,
                detail: "5 deaths in 60 s", rssBytes: 50_000_000, discord: discord, events: events, startup: startup
            ),
            database: DatabaseStatus(path: "/var/lib/bot/bot.sqlite", sizeBytes: 1 << 24, lastCheck: .init(at: at, result: "ok")),
            backups: BackupsStatus(count: 12, last: .init(id: "b12", at: at, reason: "scheduled", verified: true, locations: ["/b1", "/b2"])),
            health: health,
            alerts: [Alert(at: at, severity: .critical, message: "worker in crash loop"), Alert(at: at, severity: .info, message: "backup done")],
            operation: OperationStatus(name: "backup", startedAt: at, phase: "copying", progress: 0.5),
            journal: journal
        ),
        StatusSnapshot(
            supervisor: SupervisorStatus(pid: 1, version: "0.1.0", startedAt: at, state: "starting", rssBytes: nil),
            worker: WorkerStatus(state: .starting)
        ),
    ]
}
