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
/// - A write that fails (a full disk) never stops the supervisor: logging degrades, and says so
///   once on stderr.
final class LogFiles: Sendable {
    private struct State {
        var descriptors: [String: Int32] = [:]
        /// When the current day ends (seconds since 1970).
        var rotateAt: Int = 0
    }

    let directory: String
    let keepDays: Int
    private let secrets: [String]
    private let clock: @Sendable () -> Int
    private let state = Mutex(State())
    private let failureReported = Atomic<Bool>(false)

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
        let fd = state.withLock { state -> Int32 in
            if now >= state.rotateAt {
                rotate(&state, dayEndingAt: state.rotateAt)
                state.rotateAt = Self.nextMidnight(after: now)
                rotated = true
            }
            if let fd = state.descriptors[system] { return fd }
            let fd = Glibc.open(directory + "/" + system + ".log", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
            if fd >= 0 { state.descriptors[system] = fd }
            return fd
        }
        if rotated { prune(now: now) }
        var ok = fd >= 0
        if ok {
            ok = text.utf8.withContiguousStorageIfAvailable { write(fd, $0.baseAddress, $0.count) == $0.count }
                ?? Array(text.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) == $0.count }
        }
        if !ok, !failureReported.exchange(true, ordering: .relaxed) {
            // Logging degrades instead of taking the supervisor down; say so once.
            let message = "bot-supervisor: cannot write to \(directory)/\(system).log (\(String(cString: strerror(errno)))); logging to files is degraded until the supervisor restarts\n"
            StandardError.write(message)
        }
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
