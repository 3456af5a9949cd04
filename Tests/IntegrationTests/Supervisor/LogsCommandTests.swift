import Foundation
import Glibc
import IPC
import TestSupport
import Testing

/// `bot-supervisor logs` run as an operator runs it, against a prepared logs dir (no supervisor
/// running): the history, the filters, the errors, and `-f` across an append and a rotation.
@Suite(.serialized) struct LogsCommandTests {
    let dir: String
    let logs: String
    let config: String

    init() throws {
        dir = try makeTemporaryDirectory("lc")
        logs = dir + "/logs"
        config = dir + "/config.json"
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        try Data("{\"dataDir\": \"\(dir)/data\", \"logs\": {\"dir\": \"\(logs)\"}}".utf8).write(to: URL(fileURLWithPath: config))
        write("bot-2026-12-04.log", [line("2026-12-04T10:00:00.000Z", "INFO", "bot", "worker ready")])
        write("bot.log", [line("2026-12-05T10:00:00.000Z", "ERROR", "bot", "command failed", ["guild_id": .string("7"), "command": .string("rank")]),
                          "half a line from a crash\n"])
        write("xp.log", [line("2026-12-05T09:00:00.000Z", "INFO", "xp", "level reached", ["user_id": .string("5")])])
    }

    func line(_ ts: String, _ level: String, _ system: String, _ message: String, _ fields: [String: JSONValue] = [:]) -> String {
        LogLine.render(level: level, system: system, message: message, fields: fields, ts: ts)
    }

    func write(_ name: String, _ lines: [String]) {
        FileManager.default.createFile(atPath: logs + "/" + name, contents: Data(lines.joined().utf8))
    }

    func append(_ name: String, _ text: String) {
        let fd = open(logs + "/" + name, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        _ = text.utf8CString.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count - 1) }
        close(fd)
    }

    /// Runs `bot-supervisor logs ARGS --config …` to its end, without colour.
    func logsCommand(_ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
        let run = try SupervisorHarness.cli(["logs"] + arguments + ["--config", config], environment: ["NO_COLOR": "1"])
        return (run.status, run.stdout, run.stderr)
    }

    @Test func theHistoryIsMergedFilteredAndReadable() throws {
        let all = try logsCommand([])
        #expect(all.status == 0, "\(all.err)")
        let lines = all.out.split(separator: "\n").map(String.init)
        #expect(lines.count == 4)
        #expect(lines[0].contains(" INFO     bot worker ready"))
        #expect(lines[1].contains(" INFO     xp level reached user_id=5"))
        #expect(lines[2].contains(" ERROR    bot command failed command=rank guild_id=7"))
        #expect(lines[3].contains("[not JSON in bot.log] half a line from a crash"))
        #expect(!all.out.contains("\u{1B}["))  // not a terminal: no colour

        let errors = try logsCommand(["bot", "--level", "error", "--grep", "RANK"])
        #expect(errors.out.split(separator: "\n").count == 1 && errors.out.contains("command failed"))

        let json = try logsCommand(["xp", "--json", "--since", "2026-12-05T00:00:00Z"])
        #expect(json.out == line("2026-12-05T09:00:00.000Z", "INFO", "xp", "level reached", ["user_id": .string("5")]))
    }

    @Test func badValuesExit2NamingTheValue() throws {
        let unknown = try logsCommand(["nope"])
        #expect(unknown.status == 2 && unknown.err.contains("\"nope\"") && unknown.err.contains("systems present: bot, xp"))
        let level = try logsCommand(["--level", "loud"])
        #expect(level.status == 2 && level.err.contains("\"loud\"") && level.err.contains("--level warning"))
        let since = try logsCommand(["--since", "lastweek"])
        #expect(since.status == 2 && since.err.contains("\"lastweek\"") && since.err.contains("--since 2h"))
    }

    @Test func followSeesAppendsAndARotationThenEndsOnSIGINT() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: SupervisorHarness.supervisorBinary)
        process.arguments = ["logs", "-f", "bot", "--config", config]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        let fd = out.fileHandleForReading.fileDescriptor
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var seen = ""
        func waitFor(_ text: String) throws {
            try waitUntil(timeout: .seconds(20), "\"\(text)\" printed by logs -f") {
                var buffer = [UInt8](repeating: 0, count: 65536)
                let count = read(fd, &buffer, buffer.count)
                if count > 0 { seen += String(decoding: buffer[0..<count], as: UTF8.self) }
                return seen.contains(text)
            }
        }
        try waitFor("[not JSON in bot.log] half a line from a crash")
        append("bot.log", line("2026-12-05T10:00:01.000Z", "INFO", "bot", "appended while following"))
        try waitFor("appended while following")
        // Midnight: one more line into the old file, renamed, and a new file begun.
        append("bot.log", line("2026-12-05T23:59:59.999Z", "INFO", "bot", "last line of the day"))
        rename(logs + "/bot.log", logs + "/bot-2026-12-05.log")
        write("bot.log", [line("2026-12-06T00:00:00.001Z", "INFO", "bot", "first line of the new day")])
        try waitFor("first line of the new day")
        #expect(seen.contains("last line of the day"))
        #expect(seen.components(separatedBy: "appended while following").count == 2)  // once
        kill(process.processIdentifier, SIGINT)
        try waitUntil(timeout: .seconds(10), "logs -f to end on SIGINT") { !process.isRunning }
        #expect(process.terminationReason == .exit && process.terminationStatus == 0)
    }
}
