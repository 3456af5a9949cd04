import Foundation
import Glibc
import Synchronization
import Testing

@testable import Supervisor

/// `logs.maxBytes`: every log file together stays within it, the oldest dated files going first.
@Suite struct LogFilesLimitTests {
    let directory: String

    init() throws {
        var template = Array("/tmp/llXXXXXX".utf8CString)
        directory = String(cString: mkdtemp(&template)!)
    }

    func names() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
    }

    func onDisk() -> Int64 {
        names().reduce(0) { total, name in
            var info = stat()
            return total + (stat(directory + "/" + name, &info) == 0 ? Int64(info.st_size) : 0)
        }
    }

    func line(_ i: Int, size: Int = 100) -> String {
        let head = "{\"message\":\"line \(i)\",\"pad\":\""
        return head + String(repeating: "x", count: size - head.utf8.count - 3) + "\"}\n"
    }

    @Test func theTotalNeverPassesTheLimitAndFilesRollAtAQuarter() throws {
        let files = try LogFiles(directory: directory, maxBytes: 4000)
        for i in 0..<500 {
            files.append(line(i), to: i % 3 == 0 ? "errors" : "bot")
            #expect(onDisk() <= 4000)
            #expect(files.totalBytes == onDisk())
        }
        // No file over a quarter of the limit; rolls named by day and number.
        for name in names() {
            var info = stat()
            stat(directory + "/" + name, &info)
            #expect(info.st_size <= 1000, "\(name)")
        }
        let today = LogFiles.localDate(Int(time(nil)))
        #expect(names().contains { $0.hasPrefix("bot-\(today).") })
        // The newest lines are kept: the last one is in bot.log.
        let current = try String(contentsOfFile: directory + "/bot.log", encoding: .utf8)
        #expect(current.hasSuffix(line(499)))
    }

    @Test func theOldestDatedFilesGoFirstByDayThenRoll() throws {
        for (name, size) in [("bot-2026-01-01.log", 500), ("bot-2026-01-01.2.log", 500), ("xp-2026-01-02.log", 500), ("bot-2026-01-03.log", 500)] {
            FileManager.default.createFile(atPath: directory + "/" + name, contents: Data(repeating: 0x41, count: size))
        }
        let files = try LogFiles(directory: directory, keepDays: 100_000, maxBytes: 2500)
        #expect(files.totalBytes == 2000)
        files.append(line(0, size: 600), to: "bot")  // 2600: the oldest goes
        #expect(!names().contains("bot-2026-01-01.log"))
        #expect(names().contains("bot-2026-01-01.2.log"))
        files.append(line(1, size: 500), to: "audit")  // 2600 again: the next oldest goes
        #expect(!names().contains("bot-2026-01-01.2.log"))
        #expect(names().contains("xp-2026-01-02.log") && names().contains("bot-2026-01-03.log"))
        #expect(onDisk() <= 2500)
    }

    @Test func withOnlyCurrentFilesTheLargestIsRolledAndGoes() throws {
        let files = try LogFiles(directory: directory, maxBytes: 1 << 20)
        // Current files only, filled close to the limit without passing a quarter each.
        for i in 0..<(9 * 1024) { files.append(line(i), to: ["bot", "xp", "database", "audit"][i % 4]) }
        #expect(onDisk() <= 1 << 20)
        for i in 0..<2000 { files.append(line(i), to: "bot") }
        #expect(onDisk() <= 1 << 20)
        #expect(files.totalBytes == onDisk())
    }

    @Test func midnightRotationAndRollsShareTheNumbering() throws {
        let clock = Mutex(Int(LogFiles.nextMidnight(after: 1_800_000_000)) - 60)
        let day = LogFiles.localDate(clock.withLock { $0 })
        let files = try LogFiles(directory: directory, maxBytes: 4000, clock: { clock.withLock { $0 } })
        for i in 0..<25 { files.append(line(i), to: "bot") }  // 2500 bytes: two rolls of 1000
        clock.withLock { $0 += 120 }
        files.append(line(99), to: "bot")
        #expect(names() == ["bot-\(day).2.log", "bot-\(day).3.log", "bot-\(day).log", "bot.log"])
        // The day's last lines went to the file rotated at midnight, the last of its day.
        let rotated = try String(contentsOfFile: directory + "/bot-\(day).3.log", encoding: .utf8)
        #expect(rotated.hasSuffix(line(24)))
    }

    @Test func filesAddedByHandAreCountedAtStart() throws {
        FileManager.default.createFile(atPath: directory + "/bot.log", contents: Data(repeating: 0x41, count: 900))
        FileManager.default.createFile(atPath: directory + "/notes.txt", contents: Data(repeating: 0x41, count: 5000))
        let files = try LogFiles(directory: directory, maxBytes: 4000)
        #expect(files.totalBytes == 900)
        files.append(line(0, size: 200), to: "bot")  // 1100 would pass a quarter: rolled first
        #expect(names().contains { $0.hasPrefix("bot-") })
        #expect(files.totalBytes == 1100)
    }
}
