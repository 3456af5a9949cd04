import FoundationEssentials
import Glibc
import Hummingbird
import IPC
import Synchronization

/// The dashboard's view of the log files: recent lines with filters, the live tail (every line
/// `LogFiles` writes is offered here as it is written), and the crash reports in `errors.log`.
final class DashboardLogs: Sendable {
    /// One log line as the pages show it: its fields for filtering, and the stored JSON as is.
    struct Line: Codable, Sendable, Equatable {
        var ts: String
        var level: String
        var system: String
        var message: String
        /// The line as stored (already stripped of secrets by `LogFiles`).
        var json: String

        /// Nil for a line that is not a JSON object (shown by `logs`, not by the dashboard).
        init?(_ text: String, system fallback: String) {
            guard let object = try? JSONLine.decode([String: JSONValue].self, from: text) else { return nil }
            func string(_ key: String) -> String? { if case .string(let value)? = object[key] { value } else { nil } }
            ts = string("ts") ?? ""
            level = (string("level") ?? "info").lowercased()
            system = string("system") ?? fallback
            message = string("message") ?? ""
            json = text.trimmingCharacters(in: .newlines)
        }
    }

    struct Filter: Sendable {
        var systems: Set<String> = []
        var minimumLevel = 0
        var text: String?
        var since: String?

        /// The levels a page may ask for, as `bot-supervisor logs --level` takes them.
        static let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

        /// A stored line's rank, as `bot-supervisor logs` ranks it (`LogQuery`).
        static func rank(_ level: String) -> Int { LogQuery.rank(stored: level.uppercased()) ?? 2 }

        init() {}

        /// `?system=a,b&level=error&grep=text&since=ISO8601`.
        init(query: Parameters) throws {
            if let systems = query.get("system"), !systems.isEmpty {
                self.systems = Set(systems.split(separator: ",").map(String.init))
            }
            if let level = query.get("level"), !level.isEmpty {
                guard let rank = LogQuery.optionRanks[level.lowercased()] else {
                    throw HTTPError(.badRequest, message: "level must be one of \(Self.levels.joined(separator: ", "))")
                }
                minimumLevel = rank
            }
            if let text = query.get("grep"), !text.isEmpty { self.text = text.lowercased() }
            if let since = query.get("since"), !since.isEmpty {
                guard let date = Timestamp.parse(since) else { throw HTTPError(.badRequest, message: "since must be an ISO 8601 time") }
                self.since = Timestamp.string(date)
            }
        }

        func matches(_ line: Line) -> Bool {
            if !systems.isEmpty, !systems.contains(line.system) { return false }
            if Self.rank(line.level) < minimumLevel { return false }
            if let since, line.ts < since { return false }
            if let text, !line.json.lowercased().contains(text) { return false }
            return true
        }
    }

    struct Restart: Codable, Sendable {
        var pid: Int32?
        var at: String
        var code: Int32?
        var signal: Int32?
        var reason: String
        var restarts: Int
        var backtrace: [String]
        var lastOutput: [String]
    }

    struct CrashReport: Sendable {
        var pid: Int32
        var backtrace: [String]
        var lastOutput: [String]
    }

    let directory: String
    private let subscribers = Mutex<[UInt64: AsyncStream<Line>.Continuation]>([:])
    private let nextID = Atomic<UInt64>(0)
    /// How much of the end of each file the history reads.
    static let historyBytes = 4 << 20

    init(directory: String) {
        self.directory = directory
    }

    // MARK: - The live tail

    /// Called by `LogFiles` with each line it wrote. Cheap when no page follows the logs.
    func offer(_ text: String, system: String) {
        let listeners = subscribers.withLock { $0.values }
        guard !listeners.isEmpty, let line = Line(text, system: system) else { return }
        for listener in listeners { listener.yield(line) }
    }

    func subscribe() -> (UInt64, AsyncStream<Line>) {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).newValue
        let (stream, continuation) = AsyncStream.makeStream(of: Line.self, bufferingPolicy: .bufferingNewest(1000))
        subscribers.withLock { $0[id] = continuation }
        return (id, stream)
    }

    func unsubscribe(_ id: UInt64) {
        subscribers.withLock { $0.removeValue(forKey: id) }?.finish()
    }

    /// Ends every live tail (the supervisor is stopping).
    func endAll() {
        for listener in subscribers.withLock({ $0.values }) { listener.finish() }
    }

    // MARK: - History

    /// The newest `limit` lines passing `filter`, oldest first, from the end of each current file.
    func history(_ filter: Filter, limit: Int) async -> [Line] {
        let directory = self.directory
        return (try? await BlockingPool.shared.run("reading the logs for the dashboard", deadline: .seconds(20)) {
            var lines: [Line] = []
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            for name in names where name.hasSuffix(".log") && LogFiles.day(inFileName: name) == nil {
                let system = String(name.dropLast(4))
                if !filter.systems.isEmpty, !filter.systems.contains(system) { continue }
                for text in Self.tail(directory + "/" + name, bytes: Self.historyBytes) {
                    if let line = Line(text, system: system), filter.matches(line) { lines.append(line) }
                }
            }
            lines.sort { $0.ts < $1.ts }
            return Array(lines.suffix(limit))
        }) ?? []
    }

    /// The crash reports (`worker ended unexpectedly`) at the end of errors.log, oldest first.
    func crashReports() async -> [CrashReport] {
        let path = directory + "/errors.log"
        return (try? await BlockingPool.shared.run("reading the crash reports", deadline: .seconds(20)) {
            Self.tail(path, bytes: Self.historyBytes).compactMap { text -> CrashReport? in
                guard text.contains("worker ended unexpectedly"),
                      let object = try? JSONLine.decode([String: JSONValue].self, from: text),
                      case .string(let pid)? = object[LogKey.pid], let number = Int32(pid)
                else { return nil }
                func strings(_ key: String) -> [String] {
                    guard case .array(let values)? = object[key] else { return [] }
                    return values.compactMap { if case .string(let value) = $0 { value } else { nil } }
                }
                return CrashReport(pid: number, backtrace: strings("backtrace"), lastOutput: strings("last_output"))
            }
        }) ?? []
    }

    /// The whole lines in the last `bytes` of a file.
    static func tail(_ path: String, bytes: Int) -> [String] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        let size = Int(lseek(fd, 0, SEEK_END))
        let start = max(0, size - bytes)
        var buffer = [UInt8](repeating: 0, count: size - start)
        let read = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(start)) }
        guard read > 0 else { return [] }
        var lines = buffer[..<read].split(separator: UInt8(ascii: "\n")).map { String(decoding: $0, as: UTF8.self) }
        if start > 0, !lines.isEmpty { lines.removeFirst() }  // cut in the middle
        return lines
    }
}
