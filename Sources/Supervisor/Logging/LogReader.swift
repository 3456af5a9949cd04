import FoundationEssentials
import IPC

#if canImport(Glibc)
import Glibc
#endif

/// What `bot-supervisor logs` reads: the files of `logs.dir`, each `<system>.log` after its dated
/// files (`<system>-<day>.log`, `<system>-<day>.<N>.log`, oldest first), the systems merged in
/// time order (a k-way merge: each file is already in time order), filtered and rendered.
///
/// Files are streamed a chunk at a time, never loaded whole, so a 1 GiB directory costs a few
/// buffers. A line that is not JSON (a torn or foreign line) keeps its place with a marker: it
/// is never dropped and never stops the reading.
struct LogReader {
    let directory: String
    let query: LogQuery

    /// One file of the directory, by its name.
    struct FileName: Equatable, Sendable {
        var name: String
        var system: String
        /// nil for the current `<system>.log`.
        var day: String?
        var roll: Int

        init?(_ name: String) {
            guard name.hasSuffix(".log"), !name.hasPrefix(".") else { return nil }
            self.name = name
            if let day = LogFiles.day(inFileName: name), let range = name.range(of: "-" + day) {
                system = String(name[..<range.lowerBound])
                self.day = day
                roll = LogFiles.roll(inFileName: name)
            } else {
                system = String(name.dropLast(4))
                day = nil
                roll = 0
            }
            guard !system.isEmpty else { return nil }
        }

        /// Oldest first: the dated files by day and roll number, the current file last.
        static func older(_ a: FileName, _ b: FileName) -> Bool {
            switch (a.day, b.day) {
            case (nil, nil): a.name < b.name
            case (nil, _): false
            case (_, nil): true
            case let (x?, y?): (x, a.roll) < (y, b.roll)
            }
        }
    }

    /// Every system with a file in the directory, each with its files oldest first.
    static func files(in directory: String) throws(LogReaderError) -> [String: [FileName]] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else {
            throw .noDirectory(directory)
        }
        var systems: [String: [FileName]] = [:]
        for name in names {
            guard let file = FileName(name) else { continue }
            systems[file.system, default: []].append(file)
        }
        return systems.mapValues { $0.sorted(by: FileName.older) }
    }

    /// The systems to read: those named (each must have a file, else the error lists those
    /// present), or all of them.
    func selectedSystems(_ present: [String: [FileName]]) throws(LogReaderError) -> [String] {
        guard let wanted = query.systems, !wanted.isEmpty else { return present.keys.sorted() }
        let unknown = wanted.filter { present[$0] == nil }
        guard unknown.isEmpty else { throw .unknownSystems(unknown, present: present.keys.sorted(), directory: directory) }
        var seen = Set<String>()
        return wanted.filter { seen.insert($0).inserted }
    }

    /// Prints the matching history through `emit` (false from it stops the reading), merged in
    /// time order. With `follow`, the current files' partial last lines are left for the
    /// follower, which is returned ready to go on where the history ended.
    @discardableResult
    func history(follow: Bool, emit: (LogRecord) -> Bool) throws(LogReaderError) -> LogFollower? {
        let present = try Self.files(in: directory)
        let systems = try selectedSystems(present)
        let sinceDay = query.since.map { LogFiles.localDate(Int($0.timeIntervalSince1970)) }
        var streams: [LogStream] = []
        for system in systems {
            // A dated file holds the lines of its day: none of them can be after --since's day.
            let files = (present[system] ?? []).filter { file in
                guard let day = file.day, let sinceDay else { return true }
                return day >= sinceDay
            }
            streams.append(LogStream(directory: directory, system: system, files: files, follow: follow))
        }
        let shared = Set(systems)
        var merge = LogMerge(streams: streams)
        while let record = merge.next() {
            if isCopy(record, among: shared) { continue }
            guard query.matches(record) else { continue }
            if !emit(record) { return nil }
        }
        guard follow else { return nil }
        return LogFollower(directory: directory, query: query, systems: query.systems == nil ? nil : systems,
                           files: streams.map { ($0.system, $0.currentFile) })
    }

    /// `errors.log` holds copies of the other files' error lines: when their own system is read
    /// too, the copy is skipped (once is enough).
    func isCopy(_ record: LogRecord, among systems: Set<String>) -> Bool {
        guard record.file.system == "errors", systems.count > 1, let original = record.field("system") else { return false }
        return original != "errors" && systems.contains(original)
    }
}

/// Why the logs cannot be read as asked.
enum LogReaderError: Error, CustomStringConvertible {
    case noDirectory(String)
    case unknownSystems([String], present: [String], directory: String)

    var description: String {
        switch self {
        case .noDirectory(let path):
            "the log directory \(path) cannot be read (logs.dir of the config; pass the supervisor's --config FILE)"
        case .unknownSystems(let names, let present, let directory):
            "no log files for \(names.map { "\"\($0)\"" }.joined(separator: ", ")) in \(directory); systems present: "
                + (present.isEmpty ? "none" : present.joined(separator: ", "))
        }
    }
}

/// One line of a log file, with the file it came from.
struct LogRecord {
    var bytes: [UInt8]
    var file: LogReader.FileName
    /// The line's `ts`, or for a line that has none (not JSON), the last one before it in its
    /// file: what orders the merge and `--since`.
    var key: String

    /// A string field read straight from the bytes (`ts`, `level`, `system`) without decoding
    /// the line: the writer's JSON (sorted keys) has `"name":"` nowhere else.
    func field(_ name: String) -> String? { LogBytes.stringField(name, in: bytes) }

    /// The decoded line, nil when it is not a JSON object.
    var object: [String: JSONValue]? {
        guard bytes.first == UInt8(ascii: "{"), case .object(let object)? = try? JSONLine.decode(JSONValue.self, from: Data(bytes)) else { return nil }
        return object
    }

    var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// Byte-level helpers over a log line.
enum LogBytes {
    /// The value of `"name":"…"` when it holds no escape.
    static func stringField(_ name: String, in bytes: [UInt8]) -> String? {
        let needle = Array("\"\(name)\":\"".utf8)
        guard let start = find(needle, in: bytes) else { return nil }
        var end = start
        while end < bytes.count, bytes[end] != UInt8(ascii: "\"") {
            if bytes[end] == UInt8(ascii: "\\") { return nil }
            end += 1
        }
        guard end < bytes.count else { return nil }
        return String(decoding: bytes[start..<end], as: UTF8.self)
    }

    /// The index just after `needle` in `bytes`.
    static func find(_ needle: [UInt8], in bytes: [UInt8]) -> Int? {
        guard let first = needle.first, bytes.count >= needle.count else { return nil }
        return bytes.withUnsafeBufferPointer { haystack -> Int? in
            var index = 0
            let last = haystack.count - needle.count
            while index <= last {
                // memchr finds the candidates: most bytes are skipped at memory speed.
                guard let hit = memchr(haystack.baseAddress! + index, Int32(first), last - index + 1) else { return nil }
                index = haystack.baseAddress!.distance(to: hit.assumingMemoryBound(to: UInt8.self))
                var matched = true
                for offset in 1..<needle.count where haystack[index + offset] != needle[offset] {
                    matched = false
                    break
                }
                if matched { return index + needle.count }
                index += 1
            }
            return nil
        }
    }

    /// Whether `bytes` contain `lowercased` (ASCII), ignoring ASCII case.
    static func containsIgnoringCase(_ lowercased: [UInt8], in bytes: [UInt8]) -> Bool {
        guard !lowercased.isEmpty else { return true }
        guard bytes.count >= lowercased.count else { return false }
        let first = lowercased[0], upperFirst = first >= 97 && first <= 122 ? first - 32 : first
        var index = 0
        let last = bytes.count - lowercased.count
        while index <= last {
            let byte = bytes[index]
            if byte == first || byte == upperFirst {
                var matched = true
                for offset in 1..<lowercased.count {
                    var other = bytes[index + offset]
                    if other >= 65 && other <= 90 { other += 32 }
                    if other != lowercased[offset] { matched = false; break }
                }
                if matched { return true }
            }
            index += 1
        }
        return false
    }
}

/// Reads one file a chunk at a time and cuts it into lines; the descriptor stays open (and the
/// file readable) after a rename or a deletion.
final class LogLineReader {
    let fd: Int32
    let device: UInt64
    let inode: UInt64
    private var buffer: [UInt8] = []
    private var start = 0
    private var chunk = [UInt8](repeating: 0, count: LogLineReader.chunk)
    /// Bytes read from the file so far.
    private(set) var offset: Int64 = 0
    static let chunk = 256 * 1024

    init?(path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var info = stat()
        guard fstat(fd, &info) == 0 else { close(fd); return nil }
        self.fd = fd
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
    }

    deinit { close(fd) }

    /// The next whole line (without its newline); at the end of the file, nil, or with `final`
    /// the last line that has no newline (a torn line, or one being written when it is not).
    func next(final: Bool) -> [UInt8]? {
        while true {
            let found = buffer.withUnsafeBufferPointer { pointer -> Int? in
                guard start < pointer.count, let hit = memchr(pointer.baseAddress! + start, 0x0A, pointer.count - start) else { return nil }
                return pointer.baseAddress!.distance(to: hit.assumingMemoryBound(to: UInt8.self))
            }
            if let newline = found {
                let line = Array(buffer[start..<newline])
                start = newline + 1
                return line
            }
            if start > 0 {
                buffer.removeFirst(start)
                start = 0
            }
            var count = 0
            repeat {
                count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            } while count < 0 && errno == EINTR
            if count > 0 { buffer.append(contentsOf: chunk[0..<count]) }
            if count > 0 {
                offset += Int64(count)
                continue
            }
            guard final, !buffer.isEmpty else { return nil }
            let line = buffer
            buffer.removeAll()
            return line
        }
    }

    /// The file was truncated below what was read (emptied in place): read it again from the
    /// start. True when that happened.
    func rewindIfTruncated() -> Bool {
        var info = stat()
        guard fstat(fd, &info) == 0, Int64(info.st_size) < offset else { return false }
        lseek(fd, 0, SEEK_SET)
        offset = 0
        buffer.removeAll()
        start = 0
        return true
    }
}

/// One system's files read in order as one stream of records.
final class LogStream {
    let directory: String
    let system: String
    private var pending: [LogReader.FileName]
    private var reader: LogLineReader?
    private var file: LogReader.FileName?
    private let follow: Bool
    private var key = ""
    /// The current `<system>.log`, opened at once so that a rotation while the history is read
    /// is noticed (the follower goes on with this descriptor).
    private(set) var currentFile: LogLineReader?
    private let current: LogReader.FileName?

    init(directory: String, system: String, files: [LogReader.FileName], follow: Bool) {
        self.directory = directory
        self.system = system
        self.follow = follow
        current = files.last { $0.day == nil }
        pending = files.filter { $0.day != nil }
        currentFile = current.flatMap { LogLineReader(path: directory + "/" + $0.name) }
    }

    func next() -> LogRecord? {
        while true {
            if let reader, let file {
                let isCurrent = reader === currentFile
                if let bytes = reader.next(final: !(isCurrent && follow)) {
                    if bytes.isEmpty { continue }
                    if let ts = LogBytes.stringField("ts", in: bytes) { key = ts }
                    return LogRecord(bytes: bytes, file: file, key: key)
                }
                self.reader = nil
                self.file = nil
                if isCurrent { return nil }
            }
            if !pending.isEmpty {
                let next = pending.removeFirst()
                // Deleted since the listing (the size limit): nothing to read there any more.
                guard let opened = LogLineReader(path: directory + "/" + next.name) else { continue }
                reader = opened
                file = next
            } else if let currentFile, let current {
                reader = currentFile
                file = current
            } else {
                return nil
            }
        }
    }
}

/// Merges the streams in time order: each stream is in order, the smallest key goes first
/// (equal keys: the stream listed first).
struct LogMerge {
    private var streams: [LogStream]
    private var heads: [(record: LogRecord, stream: Int)] = []

    init(streams: [LogStream]) {
        self.streams = streams
        for index in streams.indices {
            if let record = streams[index].next() { push((record, index)) }
        }
    }

    mutating func next() -> LogRecord? {
        guard !heads.isEmpty else { return nil }
        let top = heads[0]
        let last = heads.removeLast()
        if !heads.isEmpty {
            heads[0] = last
            siftDown(0)
        }
        if let record = streams[top.stream].next() { push((record, top.stream)) }
        return top.record
    }

    private func less(_ a: Int, _ b: Int) -> Bool {
        (heads[a].record.key, heads[a].stream) < (heads[b].record.key, heads[b].stream)
    }

    private mutating func push(_ head: (record: LogRecord, stream: Int)) {
        heads.append(head)
        var child = heads.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard less(child, parent) else { break }
            heads.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ index: Int) {
        var parent = index
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < heads.count, less(left, smallest) { smallest = left }
            if right < heads.count, less(right, smallest) { smallest = right }
            guard smallest != parent else { return }
            heads.swapAt(parent, smallest)
            parent = smallest
        }
    }
}

/// The filters of `bot-supervisor logs`, checked from the cheapest: time, level, then the text.
struct LogQuery {
    /// nil: every system.
    var systems: [String]?
    /// Lines of this rank and more severe (`optionRanks`).
    var minimumLevel: Int?
    var since: Date?
    /// Lowercased.
    var grep: String?
    /// `since` as the lines' `ts` write it: the keys compare as strings.
    private let sinceKey: String?

    init(systems: [String]? = nil, minimumLevel: Int? = nil, since: Date? = nil, grep: String? = nil) {
        self.systems = systems
        self.minimumLevel = minimumLevel
        self.since = since
        self.grep = grep?.lowercased()
        sinceKey = since.map { Timestamp.string($0) }
    }

    /// A bad value of an option, with an example of a good one.
    struct BadValue: Error, CustomStringConvertible {
        var description: String
    }

    /// The ranks of `--level`: trace < debug < info < notice < warning < error < critical.
    static let optionRanks: [String: Int] = [
        "trace": 0, "debug": 1, "info": 2, "notice": 3, "warning": 4, "warn": 4, "error": 5, "critical": 6,
    ]

    /// A stored level's rank. The files hold DEBUG (trace and debug lines), INFO (info and
    /// notice), WARNING, ERROR, CRITICAL: each ranks as the most severe level it may hold, so that
    /// `--level notice` keeps the notices written as INFO.
    static func rank(stored level: String) -> Int? {
        switch level {
        case "TRACE": 0
        case "DEBUG": 1
        case "INFO", "NOTICE": 3
        case "WARNING", "WARN": 4
        case "ERROR": 5
        case "CRITICAL": 6
        default: nil
        }
    }

    static func level(_ text: String) throws(BadValue) -> Int {
        guard let rank = optionRanks[text.lowercased()] else {
            throw BadValue(description: "--level \"\(text)\" is not a level; use one of trace, debug, info, notice, warning (or warn), error, critical, e.g. --level warning")
        }
        return rank
    }

    /// `--since`: ISO 8601 (`2026-12-01T18:30:00Z`, with an offset, or a day `2026-12-01`, local
    /// midnight), a time ago (`30s`, `10m`, `2h`, `1d`), or `today` (local midnight).
    static func since(_ text: String, now: Date) throws(BadValue) -> Date {
        let value = String(text.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
        if value.lowercased() == "today", let midnight = localMidnight(of: LogFiles.localDate(Int(now.timeIntervalSince1970))) {
            return midnight
        }
        if let unit = value.last, let seconds = ["s": 1.0, "m": 60, "h": 3600, "d": 86400][String(unit)],
           let amount = Int(value.dropLast()), amount >= 0 {
            return now.addingTimeInterval(-Double(amount) * seconds)
        }
        if let date = Timestamp.parse(value) { return date }
        if let midnight = localMidnight(of: value) { return midnight }
        throw BadValue(description: "--since \"\(text)\" is not a time; use ISO 8601 (2026-12-01T18:30:00Z), a time ago (30s, 10m, 2h, 1d) or today, e.g. --since 2h")
    }

    /// Local midnight of `YYYY-MM-DD`.
    static func localMidnight(of day: String) -> Date? {
        let parts = day.split(separator: "-")
        guard day.count == 10, parts.count == 3, let year = Int32(parts[0]), let month = Int32(parts[1]), let mday = Int32(parts[2]),
              (1...12).contains(month), (1...31).contains(mday)
        else { return nil }
        var fields = tm()
        fields.tm_year = year - 1900
        fields.tm_mon = month - 1
        fields.tm_mday = mday
        fields.tm_isdst = -1
        return Date(timeIntervalSince1970: Double(mktime(&fields)))
    }

    static func grep(_ text: String) throws(BadValue) -> String {
        guard !text.isEmpty else { throw BadValue(description: "--grep needs some text to look for, e.g. --grep timeout") }
        return text.lowercased()
    }

    /// Whether `record` passes the filters. A line that is not JSON has no level or fields: it
    /// is kept (never dropped silently) unless its time (that of the line before it) is before
    /// `--since`, or `--grep` is not in its text.
    func matches(_ record: LogRecord) -> Bool {
        if let sinceKey, record.key < sinceKey { return false }
        if let minimumLevel, let level = record.field("level"), let rank = Self.rank(stored: level), rank < minimumLevel { return false }
        guard let grep else { return true }
        // A line whose bytes do not hold the text (ASCII, no escapes) cannot match: most lines
        // are ruled out without decoding them.
        let plain = grep.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }
        if plain, !LogBytes.containsIgnoringCase(Array(grep.utf8), in: record.bytes) { return false }
        guard let object = record.object else { return record.text.lowercased().contains(grep) }
        return object.contains { key, value in
            !["ts", "level", "system"].contains(key) && LogRender.value(value).lowercased().contains(grep)
        }
    }
}

/// How `bot-supervisor logs` prints a record: a readable line
/// (`2026-12-05 13:14:24.123 ERROR    bot  message key=value …`, local time, the level coloured
/// at a terminal), or with `--json` the stored line as it is.
enum LogRender {
    /// `--json`: the line as stored. A line that is not JSON becomes one that says so, so that
    /// the output stays one JSON object per line: `{"file":…,"raw":…,"ts":…,"unparsed":true}`.
    static func json(_ record: LogRecord) -> String {
        if record.object != nil { return record.text + "\n" }
        return (try? JSONLine.encode(JSONValue.object([
            "unparsed": .bool(true), "message": .string("not a JSON log line"), "file": .string(record.file.name),
            "system": .string(record.file.system), "raw": .string(record.text), "ts": record.key.isEmpty ? .null : .string(record.key),
        ]))) ?? "{\"unparsed\":true}\n"
    }

    /// The readable line. A line that is not JSON is printed as it is after the marker
    /// `[not JSON in <file>]`.
    static func text(_ record: LogRecord, color: Bool) -> String {
        guard let object = record.object else {
            let time = record.key.isEmpty ? String(repeating: " ", count: 23) : localTime(record.key)
            let marker = "[not JSON in \(record.file.name)]"
            return "\(time) \(pad("?", 8)) \(record.file.system) \(color ? "\u{1B}[7m\(marker)\u{1B}[0m" : marker) \(record.text)\n"
        }
        let ts = object["ts"]?.stringValue ?? record.key
        let level = object["level"]?.stringValue ?? "?"
        let system = object["system"]?.stringValue ?? record.file.system
        let message = object["message"].map(value) ?? ""
        var line = localTime(ts) + " "
        let shown = pad(level, 8)
        if color, let code = colors[level] { line += "\u{1B}[\(code)m\(shown)\u{1B}[0m" } else { line += shown }
        line += " " + system + " " + message
        for key in object.keys.sorted() where !["ts", "level", "system", "message"].contains(key) {
            line += " " + key + "=" + quoted(value(object[key]!))
        }
        return line + "\n"
    }

    static let colors = ["DEBUG": "2", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"]

    /// A field's value as text: a string as it is, anything else as compact JSON.
    static func value(_ value: JSONValue) -> String {
        switch value {
        case .string(let string): string
        case .integer(let number): String(number)
        case .bool(let flag): String(flag)
        case .null: "null"
        default: ((try? JSONLine.encode(value)) ?? "").trimmingNewline
        }
    }

    /// A value with a space, a quote, an `=` or a control character in it is quoted (JSON
    /// style), so that `key=value` pairs stay apart.
    static func quoted(_ text: String) -> String {
        let needsQuotes = text.isEmpty || text.unicodeScalars.contains { $0 == " " || $0 == "\"" || $0 == "=" || $0.value < 0x20 }
        guard needsQuotes else { return text }
        return ((try? JSONLine.encode(JSONValue.string(text))) ?? "\"\"").trimmingNewline
    }

    private static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }

    /// `2026-12-05T12:14:24.123Z` as local time `2026-12-05 13:14:24.123`; a `ts` of another
    /// form as it is.
    static func localTime(_ ts: String) -> String {
        let bytes = Array(ts.utf8)
        func number(_ range: Range<Int>) -> Int32? {
            var value: Int32 = 0
            for index in range {
                guard index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 else { return nil }
                value = value * 10 + Int32(bytes[index] - 48)
            }
            return value
        }
        guard bytes.count == 24, bytes[23] == UInt8(ascii: "Z"), bytes[10] == UInt8(ascii: "T"),
              let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
              let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19), let millis = number(20..<23)
        else { return ts }
        var fields = tm()
        fields.tm_year = year - 1900
        fields.tm_mon = month - 1
        fields.tm_mday = day
        fields.tm_hour = hour
        fields.tm_min = minute
        fields.tm_sec = second
        var seconds = timegm(&fields)
        var local = tm()
        localtime_r(&seconds, &local)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let ms = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(local.tm_year + 1900)-\(two(local.tm_mon + 1))-\(two(local.tm_mday)) \(two(local.tm_hour)):\(two(local.tm_min)):\(two(local.tm_sec)).\(ms)"
    }
}

extension String {
    fileprivate var trimmingNewline: String { hasSuffix("\n") ? String(dropLast()) : self }
}

/// `logs -f`: after the history, follows each system's current `<system>.log` through its
/// descriptor. When the name points to another file (the midnight rotation or a roll by size
/// renamed it and a new one began), the old file's remainder is read first, then any file rolled
/// in between, then the new file from its start. Without named systems, a system whose file
/// appears later is followed too. Each poll reads what is there and returns; the caller waits
/// between polls (never a busy loop).
final class LogFollower {
    private final class Followed {
        let system: String
        var reader: LogLineReader?
        var file: LogReader.FileName
        var key = ""
        init(system: String, reader: LogLineReader?) {
            self.system = system
            self.reader = reader
            file = LogReader.FileName(system + ".log")!
        }
    }

    let directory: String
    let query: LogQuery
    private let named: Set<String>?
    private var followed: [String: Followed] = [:]

    init(directory: String, query: LogQuery, systems: [String]?, files: [(String, LogLineReader?)]) {
        self.directory = directory
        self.query = query
        named = systems.map(Set.init)
        for (system, reader) in files { followed[system] = Followed(system: system, reader: reader) }
    }

    /// What was appended since the last poll, in time order, filtered.
    func poll() -> [LogRecord] {
        if named == nil { discover() }
        var batch: [LogRecord] = []
        for system in followed.keys.sorted() { poll(followed[system]!, into: &batch) }
        // Each file's lines are in order; across files, by time (a stable sort keeps each file's).
        let ordered = batch.enumerated().sorted { ($0.element.key, $0.offset) < ($1.element.key, $1.offset) }.map(\.element)
        let systems = Set(followed.keys)
        let reader = LogReader(directory: directory, query: query)
        return ordered.filter { !reader.isCopy($0, among: systems) && query.matches($0) }
    }

    /// New systems' current files (a feature added, a first error).
    private func discover() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for name in names {
            guard let file = LogReader.FileName(name), file.day == nil, followed[file.system] == nil else { continue }
            followed[file.system] = Followed(system: file.system, reader: nil)
        }
    }

    private func poll(_ item: Followed, into batch: inout [LogRecord]) {
        let path = directory + "/" + item.system + ".log"
        guard let reader = item.reader else {
            item.reader = LogLineReader(path: path)
            if let reader = item.reader { drain(reader, item, final: false, into: &batch) }
            return
        }
        drain(reader, item, final: false, into: &batch)
        var info = stat()
        let exists = stat(path, &info) == 0
        if exists, UInt64(info.st_dev) == reader.device, UInt64(info.st_ino) == reader.inode {
            if reader.rewindIfTruncated() { drain(reader, item, final: false, into: &batch) }
            return
        }
        // Renamed away: what was written before the rename, then what was rolled after it.
        drain(reader, item, final: true, into: &batch)
        for path in rolled(after: reader, system: item.system) {
            if let between = LogLineReader(path: path) { drain(between, item, final: true, into: &batch) }
        }
        item.reader = exists ? LogLineReader(path: path) : nil
        if let next = item.reader { drain(next, item, final: false, into: &batch) }
    }

    /// The system's dated files that come after the one `reader` has open (rolled more than once
    /// between two polls).
    private func rolled(after reader: LogLineReader, system: String) -> [String] {
        guard let files = (try? LogReader.files(in: directory))?[system] else { return [] }
        let dated = files.filter { $0.day != nil }.map { directory + "/" + $0.name }
        guard let index = dated.firstIndex(where: { path in
            var info = stat()
            return stat(path, &info) == 0 && UInt64(info.st_ino) == reader.inode && UInt64(info.st_dev) == reader.device
        }) else { return [] }
        return Array(dated[(index + 1)...])
    }

    private func drain(_ reader: LogLineReader, _ item: Followed, final: Bool, into batch: inout [LogRecord]) {
        while let bytes = reader.next(final: final) {
            if bytes.isEmpty { continue }
            if let ts = LogBytes.stringField("ts", in: bytes) { item.key = ts }
            batch.append(LogRecord(bytes: bytes, file: item.file, key: item.key))
        }
    }
}
