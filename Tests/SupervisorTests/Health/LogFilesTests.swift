import Foundation
import Glibc
import IPC
import Logging
import Synchronization
import Testing

@testable import Supervisor

@Suite struct LogFilesTests {
    let directory: String

    init() throws {
        var template = Array("/tmp/lfXXXXXX".utf8CString)
        directory = String(cString: mkdtemp(&template)!)
    }

    func read(_ name: String) -> [String] {
        ((try? String(contentsOfFile: directory + "/" + name, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    @Test func linesAreJSONWithTheRequiredFieldsAndErrorsGoToErrorsLog() throws {
        let files = try LogFiles(directory: directory)
        var handler = JSONLogHandler(system: "verification", files: files, echo: false)
        handler.logLevel = .debug
        let logger = Logger(label: "verification") { _ in handler }
        logger.info("member verified", metadata: ["guild_id": "1", "user_id": "2", "command": "verify"])
        logger.error("role not given", metadata: ["guild_id": "1", "error": "403"])
        for line in read("verification.log") {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(object["ts"] is String && object["level"] is String && object["system"] as? String == "verification" && object["message"] is String)
        }
        #expect(read("verification.log").count == 2)
        #expect(read("errors.log").count == 1)
        #expect(read("errors.log").first?.contains(#""level":"ERROR""#) == true)
        #expect(read("verification.log").first?.contains(#""guild_id":"1""#) == true)
    }

    @Test func filesRotateAtMidnightAndOldOnesAreDeleted() throws {
        let clock = Mutex(Int(LogFiles.nextMidnight(after: 1_800_000_000)) - 60)  // 23:59 local
        let start = clock.withLock { $0 }
        // A dated file from 40 days ago, and one from 10 days ago.
        let old = LogFiles.localDate(start - 40 * 86400), recent = LogFiles.localDate(start - 10 * 86400)
        FileManager.default.createFile(atPath: directory + "/bot-\(old).log", contents: Data("x\n".utf8))
        FileManager.default.createFile(atPath: directory + "/bot-\(recent).log", contents: Data("x\n".utf8))
        let files = try LogFiles(directory: directory, keepDays: 30, clock: { clock.withLock { $0 } })
        #expect(!FileManager.default.fileExists(atPath: directory + "/bot-\(old).log"))
        #expect(FileManager.default.fileExists(atPath: directory + "/bot-\(recent).log"))

        files.append("before midnight\n", to: "bot")
        clock.withLock { $0 += 120 }  // 00:01 the next day
        files.append("after midnight\n", to: "bot")
        let yesterday = LogFiles.localDate(start)
        #expect(read("bot-\(yesterday).log") == ["before midnight"])
        #expect(read("bot.log") == ["after midnight"])
    }

    @Test func secretsAreRedactedWhoeverWroteThem() throws {
        let files = try LogFiles(directory: directory, secrets: ["MTIzNDU2Nzg5.token-value", "short"])
        files.append("{\"message\":\"connect with MTIzNDU2Nzg5.token-value failed\"}\n", to: "bot")
        files.append("a short word stays\n", to: "bot")
        #expect(read("bot.log") == ["{\"message\":\"connect with <redacted> failed\"}", "a short word stays"])
    }

    @Test func datedNamesAreRecognised() {
        #expect(LogFiles.day(inFileName: "role_connections-2026-11-25.log") == "2026-11-25")
        #expect(LogFiles.day(inFileName: "bot-2026-11-25.2.log") == "2026-11-25")
        #expect(LogFiles.day(inFileName: "bot.log") == nil)
        #expect(LogFiles.day(inFileName: "notes-2026-11-25.txt") == nil)
    }
}

@Suite struct MetricsTests {
    @Test func theSnapshotRendersAsPrometheusText() throws {
        var snapshot = StatusSnapshot(
            supervisor: SupervisorStatus(pid: 1, version: "0.1.0", startedAt: Timestamp.string(), state: "running", rssBytes: 40 << 20),
            worker: WorkerStatus(pid: 2, state: .ready, restarts: 3, lastHeartbeatAgeMs: 1500, rssBytes: 50 << 20,
                                 discord: DiscordReport(mode: "sandbox", gatewayState: "connected", latencyMs: 42, sessionStartRemaining: 999),
                                 events: EventReport(received: 10, writesCommitted: 9, writeLatencyP50Ms: 1.5, writeLatencyP99Ms: 4, commandsSucceeded: 5, commandsFailed: 1))
        )
        snapshot.health = HealthStatus(status: .warn, lastRunAt: Timestamp.string(), checks: [.init(name: "backups", status: .warn, detail: "old")])
        let text = MetricsText.render(snapshot)
        let sample = try Regex(#"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-z_]+="[^"]*"\})? -?[0-9.e+-]+$"#)
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            #expect(line.wholeMatch(of: sample) != nil, "not a Prometheus sample: \(line)")
        }
        #expect(text.contains("bot_worker_up 1\n"))
        #expect(text.contains("bot_worker_restarts_total 3\n"))
        #expect(text.contains("bot_worker_heartbeat_age_seconds 1.5\n"))
        #expect(text.contains("bot_gateway_latency_seconds 0.042\n"))
        #expect(text.contains("bot_commands_total{outcome=\"failure\"} 1\n"))
        #expect(text.contains("bot_health_check_status{check=\"backups\"} 1\n"))
        #expect(text.contains("# TYPE bot_worker_restarts_total counter\n"))
    }

    @Test func theListenAddressIsHostAndPort() {
        #expect(MetricsServer.parse("127.0.0.1:9464")! == ("127.0.0.1", 9464))
        #expect(MetricsServer.parse("[::1]:9464")! == ("::1", 9464))
        #expect(MetricsServer.parse("9464") == nil)
        #expect(MetricsServer.parse("localhost:99999") == nil)
    }
}

/// Serialized: both tests point the process's stderr elsewhere for a moment, and side by side the
/// second's /dev/null swallowed what the first was reading (a failure seen once in a parallel run).
@Suite(.serialized) struct FullDiskLoggingTests {
    @Test func aFullDiskDegradesLoggingWithoutStoppingAnything() throws {
        var template = Array("/tmp/fdXXXXXX".utf8CString)
        let directory = String(cString: mkdtemp(&template)!)
        // Every write to bot.log fails with ENOSPC, as on a full disk.
        try FileManager.default.createSymbolicLink(atPath: directory + "/bot.log", withDestinationPath: "/dev/full")
        let files = try LogFiles(directory: directory)
        // stderr to a pipe, to see what the supervisor says.
        var pipe: [Int32] = [0, 0]
        #expect(Glibc.pipe(&pipe) == 0)
        let saved = dup(STDERR_FILENO)
        dup2(pipe[1], STDERR_FILENO)
        for i in 0..<5 { files.append("line \(i)\n", to: "bot") }
        files.append("still fine\n", to: "supervisor")
        dup2(saved, STDERR_FILENO)
        close(pipe[1])
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = read(pipe[0], &buffer, buffer.count)
        close(pipe[0])
        let said = String(decoding: buffer[0..<max(0, count)], as: UTF8.self)
        // Said once, not once per line; the other files go on.
        #expect(said.components(separatedBy: "its lines are dropped").count - 1 == 1, "\(said)")
        #expect(said.contains("No space left on device"))
        #expect((try String(contentsOfFile: directory + "/supervisor.log", encoding: .utf8)) == "still fine\n")
    }

    @Test func onceTheDiskHasRoomAgainTheFileSaysHowManyLinesWereLost() throws {
        var template = Array("/tmp/fdXXXXXX".utf8CString)
        let directory = String(cString: mkdtemp(&template)!)
        try FileManager.default.createSymbolicLink(atPath: directory + "/bot.log", withDestinationPath: "/dev/full")
        let files = try LogFiles(directory: directory)
        let saved = dup(STDERR_FILENO)
        let null = open("/dev/null", O_WRONLY)
        dup2(null, STDERR_FILENO)
        defer { dup2(saved, STDERR_FILENO); close(null); close(saved) }
        for i in 0..<3 { files.append("{\"message\":\"lost \(i)\"}\n", to: "bot") }
        // Room again: a real file in its place.
        unlink(directory + "/bot.log")
        files.append("{\"message\":\"kept\"}\n", to: "bot")
        let lines = (try String(contentsOfFile: directory + "/bot.log", encoding: .utf8)).split(separator: "\n")
        #expect(lines.count == 2)
        let notice = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        #expect(notice["message"] as? String == "log lines could not be written")
        #expect(notice["lines"] as? Int == 3)
        #expect((notice["error"] as? String)?.contains("No space left") == true)
        #expect(lines[1] == #"{"message":"kept"}"#)
    }
}
