import Foundation
import Glibc
import IPC
import Testing

@testable import Supervisor

@Suite struct LogReaderTests {
    let directory: String

    init() throws {
        var template = Array("/tmp/lrXXXXXX".utf8CString)
        directory = String(cString: mkdtemp(&template)!)
    }

    func line(_ ts: String, _ level: String, _ system: String, _ message: String, _ fields: [String: JSONValue] = [:]) -> String {
        LogLine.render(level: level, system: system, message: message, fields: fields, ts: ts)
    }

    func write(_ name: String, _ lines: [String]) {
        FileManager.default.createFile(atPath: directory + "/" + name, contents: Data(lines.joined().utf8))
    }

    func append(_ name: String, _ text: String) {
        let fd = open(directory + "/" + name, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        _ = text.utf8CString.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count - 1) }
        close(fd)
    }

    func read(_ query: LogQuery = LogQuery()) throws -> [LogRecord] {
        var records: [LogRecord] = []
        try LogReader(directory: directory, query: query).history(follow: false) { records.append($0); return true }
        return records
    }

    func messages(_ records: [LogRecord]) -> [String] {
        records.map { $0.object?["message"]?.stringValue ?? "!" + $0.text }
    }

    @Test func fileNamesGiveSystemDayAndRollInOrder() {
        let names = ["bot.log", "bot-2026-12-04.2.log", "bot-2026-12-04.log", "bot-2026-12-03.log", "role_connections-2026-12-04.10.log"]
        let files = names.compactMap(LogReader.FileName.init).filter { $0.system == "bot" }.sorted(by: LogReader.FileName.older)
        #expect(files.map(\.name) == ["bot-2026-12-03.log", "bot-2026-12-04.log", "bot-2026-12-04.2.log", "bot.log"])
        let roll = LogReader.FileName("role_connections-2026-12-04.10.log")
        #expect(roll?.system == "role_connections" && roll?.day == "2026-12-04" && roll?.roll == 10)
        #expect(LogReader.FileName("notes.txt") == nil)
    }

    @Test func systemsAreMergedInTimeOrderRotatedFilesFirst() throws {
        write("bot-2026-12-03.log", [line("2026-12-03T10:00:00.000Z", "INFO", "bot", "b1")])
        write("bot-2026-12-04.log", [line("2026-12-04T10:00:00.000Z", "INFO", "bot", "b2")])
        write("bot-2026-12-04.2.log", [line("2026-12-04T11:00:00.000Z", "INFO", "bot", "b3")])
        write("bot.log", [line("2026-12-05T09:00:00.000Z", "INFO", "bot", "b4")])
        write("xp.log", [line("2026-12-03T12:00:00.000Z", "INFO", "xp", "x1"), line("2026-12-05T08:00:00.000Z", "INFO", "xp", "x2")])
        #expect(messages(try read()) == ["b1", "x1", "b2", "b3", "x2", "b4"])
        #expect(messages(try read(LogQuery(systems: ["xp"]))) == ["x1", "x2"])
    }

    @Test func anUnknownSystemNamesThoseThatArePresent() throws {
        write("bot.log", [line("2026-12-05T09:00:00.000Z", "INFO", "bot", "b")])
        write("xp-2026-12-01.log", [line("2026-12-01T09:00:00.000Z", "INFO", "xp", "x")])
        #expect(throws: LogReaderError.self) { try read(LogQuery(systems: ["nope"])) }
        do {
            _ = try read(LogQuery(systems: ["nope"]))
        } catch {
            #expect("\(error)".contains("\"nope\"") && "\(error)".contains("systems present: bot, xp"))
        }
    }

    @Test func levelsSinceAndGrepFilter() throws {
        write("bot.log", [
            line("2026-12-05T09:00:00.000Z", "DEBUG", "bot", "tick"),
            line("2026-12-05T09:00:01.000Z", "INFO", "bot", "ready"),
            line("2026-12-05T09:00:02.000Z", "WARNING", "bot", "slow", ["guild_id": .string("42")]),
            line("2026-12-05T09:00:03.000Z", "ERROR", "bot", "command failed", ["error": .string("Missing Permissions")]),
            line("2026-12-05T09:00:04.000Z", "CRITICAL", "bot", "gone"),
        ])
        #expect(messages(try read(LogQuery(minimumLevel: try LogQuery.level("warn")))) == ["slow", "command failed", "gone"])
        #expect(messages(try read(LogQuery(minimumLevel: try LogQuery.level("notice")))) == ["ready", "slow", "command failed", "gone"])
        #expect(messages(try read(LogQuery(minimumLevel: try LogQuery.level("trace")))).count == 5)
        let since = try LogQuery.since("2026-12-05T09:00:03Z", now: Date())
        #expect(messages(try read(LogQuery(since: since))) == ["command failed", "gone"])
        // Message and field values, any case; not the keys.
        #expect(messages(try read(LogQuery(grep: try LogQuery.grep("PERMISSIONS")))) == ["command failed"])
        #expect(messages(try read(LogQuery(grep: try LogQuery.grep("42")))) == ["slow"])
        #expect(messages(try read(LogQuery(grep: try LogQuery.grep("guild_id")))) == [])
    }

    @Test func optionValuesAreCheckedWithAnExample() throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(try LogQuery.since("10m", now: now) == now.addingTimeInterval(-600))
        #expect(try LogQuery.since("2h", now: now) == now.addingTimeInterval(-7200))
        #expect(try LogQuery.since("1d", now: now) == now.addingTimeInterval(-86400))
        #expect(try LogQuery.since("2026-12-01T18:30:00Z", now: now) == Timestamp.parse("2026-12-01T18:30:00Z"))
        let today = try LogQuery.since("today", now: now)
        #expect(today <= now && now.timeIntervalSince(today) < 86400 + 3600)
        #expect(LogFiles.localDate(Int(today.timeIntervalSince1970)) == LogFiles.localDate(1_800_000_000))
        for bad in ["yesterdayish", "10x", "", "-5m"] {
            #expect(throws: LogQuery.BadValue.self) { try LogQuery.since(bad, now: now) }
        }
        do { _ = try LogQuery.since("soon", now: now) } catch { #expect(error.description.contains("\"soon\"") && error.description.contains("e.g. --since 2h")) }
        do { _ = try LogQuery.level("verbose") } catch { #expect(error.description.contains("\"verbose\"") && error.description.contains("e.g. --level warning")) }
        #expect(throws: LogQuery.BadValue.self) { try LogQuery.grep("") }
    }

    @Test func aLineThatIsNotJSONKeepsItsPlaceWithAMarker() throws {
        write("bot.log", [line("2026-12-05T09:00:00.000Z", "INFO", "bot", "before"), "{\"level\":\"INF\n", "plain text from a crash\n",
                          line("2026-12-05T09:00:01.000Z", "INFO", "bot", "after")])
        let records = try read(LogQuery(minimumLevel: 4))
        #expect(records.count == 2)  // the level does not apply to them: never dropped
        let text = LogRender.text(records[0], color: false)
        #expect(text.contains("[not JSON in bot.log] {\"level\":\"INF") && text.hasPrefix("2026-12-05 "))
        let json = try JSONLine.decode(JSONValue.self, from: LogRender.json(records[1]))
        #expect(json["unparsed"] == .bool(true) && json["raw"] == .string("plain text from a crash") && json["ts"] == .string("2026-12-05T09:00:00.000Z"))
        let all = try read()
        #expect(LogRender.json(all[0]) == line("2026-12-05T09:00:00.000Z", "INFO", "bot", "before"))
    }

    @Test func readableLinesShowFieldsAndColourOnlyWhenAsked() throws {
        let stored = line("2026-12-05T09:00:00.123Z", "ERROR", "xp", "write failed", ["guild_id": .string("1"), "error": .string("disk full"), "rows": .integer(3)])
        write("xp.log", [stored])
        let record = try #require(try read().first)
        let plain = LogRender.text(record, color: false)
        #expect(plain.hasSuffix(" ERROR    xp write failed error=\"disk full\" guild_id=1 rows=3\n"))
        #expect(plain.hasPrefix(LogRender.localTime("2026-12-05T09:00:00.123Z")) && plain.contains(".123 "))
        #expect(!plain.contains("\u{1B}"))
        #expect(LogRender.text(record, color: true).contains("\u{1B}[31mERROR   \u{1B}[0m"))
    }

    @Test func errorsLogCopiesAreShownOnce() throws {
        let failure = line("2026-12-05T09:00:01.000Z", "ERROR", "bot", "command failed")
        write("bot.log", [line("2026-12-05T09:00:00.000Z", "INFO", "bot", "ready"), failure])
        write("errors.log", [failure, line("2026-12-05T09:00:02.000Z", "ERROR", "supervisor", "backup failed")])
        // supervisor.log is not there (deleted by the size limit): its copy is the only one.
        #expect(messages(try read()) == ["ready", "command failed", "backup failed"])
        #expect(messages(try read(LogQuery(systems: ["errors"]))) == ["command failed", "backup failed"])
    }

    @Test func followSeesAppendsRotationsAndRolls() throws {
        write("bot.log", [line("2026-12-05T09:00:00.000Z", "INFO", "bot", "old")])
        var history: [LogRecord] = []
        let follower = try #require(try LogReader(directory: directory, query: LogQuery()).history(follow: true) { history.append($0); return true })
        #expect(messages(history) == ["old"])
        #expect(follower.poll().isEmpty)
        // Half a line is held until its newline comes.
        let appended = line("2026-12-05T09:00:01.000Z", "INFO", "bot", "appended")
        append("bot.log", String(appended.prefix(20)))
        #expect(follower.poll().isEmpty)
        append("bot.log", String(appended.dropFirst(20)))
        #expect(messages(follower.poll()) == ["appended"])
        // Rotation: one more line into the old file, renamed, then a roll between two polls,
        // then the new file.
        append("bot.log", line("2026-12-05T09:00:02.000Z", "INFO", "bot", "last of the old"))
        rename(directory + "/bot.log", directory + "/bot-2026-12-05.log")
        write("bot-2026-12-05.2.log", [line("2026-12-05T09:00:03.000Z", "INFO", "bot", "rolled between polls")])
        write("bot.log", [line("2026-12-05T09:00:04.000Z", "INFO", "bot", "new file")])
        #expect(messages(follower.poll()) == ["last of the old", "rolled between polls", "new file"])
        // A new system's file is followed too.
        write("xp.log", [line("2026-12-05T09:00:05.000Z", "INFO", "xp", "first xp")])
        append("bot.log", line("2026-12-05T09:00:06.000Z", "INFO", "bot", "more"))
        #expect(messages(follower.poll()) == ["first xp", "more"])
    }

    @Test func aLargeDirectoryIsStreamed() throws {
        // 20,000 lines (about 2 MB) over 4 systems: merged in order through many buffer refills.
        // Small on purpose: a unit test that computes for seconds holds one of the two cooperative
        // threads, and starved the sandbox's timing-sensitive Gateway tests in a parallel run.
        for system in ["bot", "xp", "database", "audit"] {
            var text = ""
            for i in 0..<5_000 {
                let seconds = i * 4 + ["bot", "xp", "database", "audit"].firstIndex(of: system)!
                let ts = Timestamp.string(Date(timeIntervalSince1970: 1_800_000_000 + Double(seconds)))
                text += line(ts, "INFO", system, "m\(seconds)")
            }
            FileManager.default.createFile(atPath: directory + "/\(system).log", contents: Data(text.utf8))
        }
        var count = 0, previous = ""
        var ordered = true
        try LogReader(directory: directory, query: LogQuery()).history(follow: false) { record in
            if record.key < previous { ordered = false }
            previous = record.key
            count += 1
            return true
        }
        #expect(count == 20_000 && ordered)
    }
}
