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
/// - Every `*.log` file of the directory together stays within `maxBytes` (`logs.maxBytes`): a
///   running total (the directory scanned at start and at each midnight, each write added) is
///   checked before each write. Over it, the oldest dated files go first (by day, then by roll
///   number); when only current files are left, the largest is rolled and goes in turn. A
///   current file that would pass a quarter of `maxBytes` is rolled to `<system>-<day>.<N>.log`
///   and a new one begun. Rolls and deletions happen under the lock, between whole lines.
final class LogFiles: Sendable {
    /// A dated file: rotated at midnight or rolled by size.
    struct DatedFile: Equatable {
        var name: String
        var day: String
        /// 1 for `<system>-<day>.log`, N for `<system>-<day>.N.log`.
        var roll: Int
        var size: Int64

        /// Oldest first: by day, then by roll number.
        static func older(_ a: DatedFile, _ b: DatedFile) -> Bool {
            (a.day, a.roll, a.name) < (b.day, b.roll, b.name)
        }
    }

    private struct State {
        var descriptors: [String: Int32] = [:]
        /// The size of every `*.log` file of the directory together, as this process knows it.
        var total: Int64 = 0
        /// The current `<system>.log` files' sizes.
        var current: [String: Int64] = [:]
        /// The dated files, oldest first.
        var dated: [DatedFile] = []
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
    /// `logs.maxBytes`: every log file together stays within it.
    let maxBytes: Int64
    /// No current file grows past this (a quarter of `maxBytes`): it is rolled first.
    var maxFileBytes: Int64 { max(maxBytes / 4, 1) }
    private let secrets: [String]
    private let clock: @Sendable () -> Int
    private let state = Mutex(State())
    /// Who else sees each line as written (the dashboard's live tail).
    /// In a class box: a closure kept in a `Mutex` is reabstracted at every `withLock` and the
    /// thunks pile up (one more pair per line, found under a log flood).
    private let listener = Mutex<Listener?>(nil)
    private final class Listener: Sendable {
        let offer: @Sendable (String, String) -> Void
        init(_ offer: @escaping @Sendable (String, String) -> Void) { self.offer = offer }
    }

    init(directory: String, keepDays: Int = 30, secrets: [String] = [], maxBytes: Int64 = 1 << 30, clock: @escaping @Sendable () -> Int = { Int(time(nil)) }) throws {
        self.directory = directory
        self.keepDays = keepDays
        self.maxBytes = maxBytes
        self.secrets = secrets.filter { $0.count >= 8 }
        self.clock = clock
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let now = clock()
        state.withLock { state in
            state.rotateAt = Self.nextMidnight(after: now)
            prune(now: now)
            scan(&state)
        }
    }

    /// The size of every log file together, as counted (for tests and status).
    var totalBytes: Int64 { state.withLock { $0.total } }

    deinit {
        state.withLock { for fd in $0.descriptors.values { close(fd) } }
    }

    /// `offer` sees every line (secrets already redacted) after it was written.
    func tap(_ offer: @escaping @Sendable (String, String) -> Void) {
        listener.withLock { $0 = Listener(offer) }
    }

    /// Appends `line` (which must end with a newline) to `<system>.log`.
    func append(_ line: String, to system: String) {
        var text = line
        // A byte search: Foundation's `contains` cost more than the write itself under a flood.
        let bytes = secrets.isEmpty ? [] : Array(line.utf8)
        for secret in secrets where LogBytes.find(Array(secret.utf8), in: bytes) != nil {
            text = text.replacingOccurrences(of: secret, with: "<redacted>")
        }
        let now = clock()
        var recovered: State.Outage?
        state.withLock { state in
            if now >= state.rotateAt {
                rotate(&state, dayEndingAt: state.rotateAt)
                state.rotateAt = Self.nextMidnight(after: now)
                prune(now: now)
                scan(&state)
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
        listener.withLock { $0 }?.offer(text, system)
        if let recovered {
            StandardError.write("bot-supervisor: \(directory)/\(system).log can be written again; \(recovered.lines) lines were lost (\(recovered.error))\n")
        }
    }

    /// One write(2) of `text` to `<system>.log`, opened if needed; nil when it all went out, else
    /// the error (a partial line is truncated away).
    private func write(_ text: String, to system: String, _ state: inout State) -> String? {
        let count = text.utf8.count
        makeRoom(for: Int64(count), in: system, &state)
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
            // What is there already (made or grown by someone else) counts from now on.
            var info = stat()
            let size = fstat(fd, &info) == 0 ? Int64(info.st_size) : 0
            state.total += size - (state.current[system] ?? 0)
            state.current[system] = size
        }
        let before = lseek(fd, 0, SEEK_END)
        let written = text.utf8.withContiguousStorageIfAvailable { Glibc.write(fd, $0.baseAddress, $0.count) }
            ?? Array(text.utf8).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        if written == count {
            state.total += Int64(count)
            state.current[system, default: 0] += Int64(count)
            return nil
        }
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
        for system in Array(state.descriptors.keys) {
            roll(system, day: day, &state)
        }
        state.descriptors.removeAll()
    }

    /// Renames `<system>.log` to the first free dated name of `day` (`<system>-<day>.log`, then
    /// `<system>-<day>.2.log`, …); the next write begins a new file.
    private func roll(_ system: String, day: String, _ state: inout State) {
        if let fd = state.descriptors.removeValue(forKey: system) { close(fd) }
        let current = directory + "/" + system + ".log"
        var name = system + "-" + day + ".log"
        var suffix = 1
        while access(directory + "/" + name, F_OK) == 0 {
            suffix += 1
            name = system + "-" + day + "." + String(suffix) + ".log"
        }
        let size = state.current.removeValue(forKey: system) ?? 0
        guard rename(current, directory + "/" + name) == 0 else {
            // Nothing there to roll (deleted behind our back): it no longer counts.
            state.total -= size
            return
        }
        let file = DatedFile(name: name, day: day, roll: suffix, size: size)
        let index = state.dated.firstIndex { DatedFile.older(file, $0) } ?? state.dated.endIndex
        state.dated.insert(file, at: index)
    }

    /// Before `count` more bytes go to `<system>.log`: rolls it when it would pass
    /// `maxFileBytes`, then deletes the oldest dated files (rolling the largest current file when
    /// none is left) until the total with those bytes fits within `maxBytes`.
    private func makeRoom(for count: Int64, in system: String, _ state: inout State) {
        guard state.total + count > maxBytes || (state.current[system] ?? 0) + count > maxFileBytes else { return }
        let today = Self.localDate(clock())
        if let size = state.current[system], size > 0, size + count > maxFileBytes {
            roll(system, day: today, &state)
        }
        while state.total + count > maxBytes {
            if state.dated.isEmpty {
                guard let largest = state.current.filter({ $0.value > 0 }).max(by: { $0.value < $1.value })?.key else { return }
                roll(largest, day: today, &state)
                continue
            }
            let oldest = state.dated.removeFirst()
            unlink(directory + "/" + oldest.name)
            state.total -= oldest.size
        }
    }

    /// Counts every `*.log` file of the directory afresh: at start and after each midnight, so
    /// that files added or deleted by hand are caught up with.
    private func scan(_ state: inout State) {
        state.total = 0
        state.current = [:]
        state.dated = []
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for name in names where name.hasSuffix(".log") {
            var info = stat()
            guard stat(directory + "/" + name, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { continue }
            let size = Int64(info.st_size)
            state.total += size
            if let day = Self.day(inFileName: name) {
                state.dated.append(DatedFile(name: name, day: day, roll: Self.roll(inFileName: name), size: size))
            } else {
                state.current[String(name.dropLast(4))] = size
            }
        }
        state.dated.sort(by: DatedFile.older)
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

    /// 1 for `bot-2026-11-25.log`, 2 for `bot-2026-11-25.2.log`.
    static func roll(inFileName name: String) -> Int {
        let parts = name.dropLast(4).split(separator: ".")
        guard parts.count >= 2, let roll = Int(parts[parts.count - 1]) else { return 1 }
        return roll
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
