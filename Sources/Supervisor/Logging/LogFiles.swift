import FoundationEssentials
import IPC
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The per-system JSON log files under `logs.dir`: `supervisor.log`, `bot.log`, `audit.log`,
/// `errors.log`, …
///
/// - Each line is written with a single `write(2)` to a descriptor opened with `O_APPEND`, so
///   lines never interleave or tear. The supervisor is the only process that writes these files
///   (the worker's lines come through its stderr), which is what makes rotation by rename safe.
/// - At local midnight every file is renamed to `<system>-<YYYY-MM-DD>.log` (the day it holds)
///   and a new one started; dated files older than `keepDays` are deleted.
/// - Secrets (the token, the webhook URL) are replaced by `<redacted>` in every line, whoever
///   wrote it.
/// - A write that fails (a full disk) never stops the supervisor: that line is dropped whole (a
///   short write is truncated away, so no line is ever torn), stderr says so once, and once the
///   file can be written again its next line is a warning with how many lines were lost.
final class LogFiles: Sendable {
    private struct State {
        var descriptors: [String: Int32] = [:]
        /// When the current day ends (seconds since 1970).
        var rotateAt: Int = 0
        /// Per file: since when writes fail (a full disk), and how many lines were dropped.
        struct Outage {
            var since: Int
            var lines: Int
            var error: String
        }
        var outages: [String: Outage] = [:]
    }

    let directory: String
    let keepDays: Int
    private let secrets: [String]
    private let clock: @Sendable () -> Int
    private let state = Mutex(State())

    init(directory: String, keepDays: Int = 30, secrets: [String] = [], clock: @escaping @Sendable () -> Int = { Int(time(nil)) }) throws {
        self.directory = directory
        self.keepDays = keepDays
        self.secrets = secrets.filter { $0.count >= 8 }
        self.clock = clock
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let now = clock()
        state.withLock { $0.rotateAt = Self.nextMidnight(after: now) }
        prune(now: now)
    }

    deinit {
        state.withLock { for fd in $0.descriptors.values { close(fd) } }
    }

    /// Appends `line` (which must end with a newline) to `<system>.log`.
    func append(_ line: String, to system: String) {
        var text = line
        for secret in secrets where text.contains(secret) {
            text = text.replacingOccurrences(of: secret, with: "<redacted>")
        }
        let now = clock()
        var rotated = false
        var recovered: State.Outage?
        state.withLock { state in
            if now >= state.rotateAt {
                rotate(&state, dayEndingAt: state.rotateAt)
                state.rotateAt = Self.nextMidnight(after: now)
                rotated = true
            }
            // Under the lock: a short write is undone before anyone else appends, so a full disk
            // loses whole lines, never leaves half of one. After an outage, the file first says
            // how many lines it lost, then goes on.
            if let outage = state.outages[system] {
                let notice = LogLine.render(level: "WARNING", system: "supervisor", message: "log lines could not be written", fields: [
                    "lines": .integer(outage.lines), "error": .string(outage.error), "file": .string(system + ".log"),
                    "since": .string(Timestamp.string(Date(timeIntervalSince1970: Double(outage.since)))),
                ])
                if write(notice, to: system, &state) == nil {
                    state.outages[system] = nil
                    recovered = outage
                }
            }
            if let error = write(text, to: system, &state) {
                if state.outages[system] == nil {
                    state.outages[system] = .init(since: now, lines: 0, error: error)
                    // Logging degrades instead of taking the supervisor down; say so once.
                    StandardError.write("bot-supervisor: cannot write to \(directory)/\(system).log (\(error)); its lines are dropped (and counted) until writing works again\n")
                }
                state.outages[system]?.lines += 1
            }
        }
        if rotated { prune(now: now) }
        if let recovered {
            StandardError.write("bot-supervisor: \(directory)/\(system).log can be written again; \(recovered.lines) lines were lost (\(recovered.error))\n")
        }
    }

    /// One write(2) of `text` to `<system>.log`, opened if needed; nil when it all went out, else
    /// the error (a partial line is truncated away).
    private func write(_ text: String, to system: String, _ state: inout State) -> String? {
        var fd = state.descriptors[system] ?? -1
        if fd < 0 {
            let path = directory + "/" + system + ".log"
            fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
            if fd < 0, errno == ENOENT {
                // The directory went away (deleted, unmounted): make it again.
                try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
            }
            guard fd >= 0 else { return String(cString: strerror(errno)) }
            state.descriptors[system] = fd
        }
        let before = lseek(fd, 0, SEEK_END)
        let count = text.utf8.count
        let written = text.utf8.withContiguousStorageIfAvailable { Glibc.write(fd, $0.baseAddress, $0.count) }
            ?? Array(text.utf8).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        if written == count { return nil }
        let error = written < 0 ? String(cString: strerror(errno)) : "short write, \(written) of \(count) bytes"
        if written > 0, before >= 0 { _ = ftruncate(fd, before) }
        // Opened afresh next time: the file may have been moved, or its disk remounted.
        close(fd)
        state.descriptors[system] = nil
        return error
    }

    /// Renames every open file to the dated name of the day that ends at `end`.
    private func rotate(_ state: inout State, dayEndingAt end: Int) {
        let day = Self.localDate(end - 1)
        for (system, fd) in state.descriptors {
            close(fd)
            let current = directory + "/" + system + ".log"
            var target = directory + "/" + system + "-" + day + ".log"
            var suffix = 1
            while access(target, F_OK) == 0 {
                suffix += 1
                target = directory + "/" + system + "-" + day + "." + String(suffix) + ".log"
            }
            rename(current, target)
        }
        state.descriptors.removeAll()
    }

    /// Deletes dated files whose day is more than `keepDays` before today.
    private func prune(now: Int) {
        let oldest = Self.localDate(now - keepDays * 86400)
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for name in names {
            guard let day = Self.day(inFileName: name), day < oldest else { continue }
            unlink(directory + "/" + name)
        }
    }

    /// `2026-11-25` from `bot-2026-11-25.log` or `bot-2026-11-25.2.log`.
    static func day(inFileName name: String) -> String? {
        guard name.hasSuffix(".log") else { return nil }
        let parts = name.dropLast(4).split(separator: "-")
        guard parts.count >= 4 else { return nil }
        let year = parts[parts.count - 3], month = parts[parts.count - 2]
        let day = parts[parts.count - 1].split(separator: ".").first ?? ""
        guard year.count == 4, month.count == 2, day.count == 2, Int(year) != nil, Int(month) != nil, Int(day) != nil else { return nil }
        return "\(year)-\(month)-\(day)"
    }

    static func localDate(_ seconds: Int) -> String {
        var value = time_t(seconds)
        var parts = tm()
        localtime_r(&value, &parts)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))"
    }

    static func nextMidnight(after seconds: Int) -> Int {
        var value = time_t(seconds)
        var parts = tm()
        localtime_r(&value, &parts)
        parts.tm_mday += 1
        parts.tm_hour = 0
        parts.tm_min = 0
        parts.tm_sec = 0
        parts.tm_isdst = -1
        return Int(mktime(&parts))
    }
}
