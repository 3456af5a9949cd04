import FoundationEssentials
import IPC
import Logging
import Synchronization

/// Where the worker's stdout and stderr lines go. A well-formed log line of one of the worker's
/// systems (the core ones and those its hello announced, `systems`) is appended as it is to that
/// system's file (and to `errors.log`, counted by `errors`, when it is an error); anything else
/// (a crash backtrace, a stray print) is kept in `bot.log` with its stream and pid.
struct WorkerOutput: Sendable {
    let files: LogFiles
    let echo: Bool
    let fallback: Logger
    var errors: ErrorTracker?
    /// Filled in by `WorkerLinkServer` from each worker's hello.
    var systems = WorkerLogSystems()

    static let underJournald = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil

    /// The worker's newest output lines, for the report of a crash.
    let recent = RecentLines(capacity: 60)

    func accept(_ line: String, stream: String, pid: Int32) {
        recent.add(line, pid: pid)
        guard let parsed = LogLine.parse(line, systems: systems.systems(of: pid)) else {
            fallback.log(level: stream == "stderr" ? .warning : .info, "\(line)", metadata: [LogKey.stream: "\(stream)", LogKey.pid: "\(pid)"])
            return
        }
        files.append(line + "\n", to: parsed.system)
        if parsed.level == "ERROR" || parsed.level == "CRITICAL" {
            files.append(line + "\n", to: "errors")
            // `error_type` read from the bytes: decoding the line a second time halved what a flood
            // of errors could be filed at.
            errors?.record(system: parsed.system, message: parsed.message, errorType: LogBytes.stringField("error_type", in: Array(line.utf8)), detail: parsed.details)
        }
        if echo {
            let details = parsed.details.isEmpty ? "" : " " + parsed.details
            if Self.underJournald {
                // sd-daemon(3) priority prefixes: journald files the line at its level.
                let priority = ["DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2][parsed.level] ?? 6
                StandardError.write("<\(priority)>worker \(parsed.system): \(parsed.message)\(details)\n")
            } else {
                StandardError.write("\(parsed.ts) \(parsed.level) worker \(parsed.system): \(parsed.message)\(details)\n")
            }
        }
    }
}

/// What each worker wrote last (each line cut to 500 characters), and whether its output has
/// ended, for the report of a crash: the lines before the Swift runtime's "Program crashed"
/// header, and the backtrace that follows it (its first 150 lines: the crashed thread comes
/// first).
final class RecentLines: Sendable {
    struct Report: Sendable {
        var before: [String]
        var backtrace: [String]
    }

    private struct Lines {
        var recent: [String] = []
        var backtrace: [String]?
        var beforeCrash: [String] = []
    }

    private struct State {
        var workers: [Int32: Lines] = [:]
        var ended: Set<Int32> = []
    }

    private let state = Mutex(State())
    let capacity: Int
    static let backtraceLines = 150

    init(capacity: Int) {
        self.capacity = capacity
    }

    func add(_ line: String, pid: Int32) {
        let line = String(line.prefix(500))
        state.withLock { state in
            var lines = state.workers[pid] ?? Lines()
            if line.contains("*** Program crashed:"), lines.backtrace == nil {
                lines.beforeCrash = lines.recent
                lines.backtrace = []
            }
            if lines.backtrace != nil {
                if lines.backtrace!.count < Self.backtraceLines { lines.backtrace!.append(line) }
            } else {
                lines.recent.append(line)
                if lines.recent.count > capacity { lines.recent.removeFirst() }
            }
            state.workers[pid] = lines
        }
    }

    /// The worker's stderr reached its end: everything it wrote has been read.
    func ended(pid: Int32) {
        _ = state.withLock { $0.ended.insert(pid) }
    }

    func hasEnded(pid: Int32) -> Bool { state.withLock { $0.ended.contains(pid) } }

    /// The worker's lines, forgotten from here on.
    @discardableResult
    func take(pid: Int32) -> Report {
        state.withLock { state in
            state.ended.remove(pid)
            let lines = state.workers.removeValue(forKey: pid) ?? Lines()
            return lines.backtrace.map { Report(before: lines.beforeCrash, backtrace: $0) } ?? Report(before: lines.recent, backtrace: [])
        }
    }
}

extension WorkerOutput {
    /// A worker that died unexpectedly is an error: its exit and its last output (the Swift
    /// runtime's backtrace, when it crashed) go to `errors.log`, once its output has been read to
    /// the end (or after 3 s: a child may still hold the pipe).
    func reportCrash(pid: Int32, reason: String) async {
        let deadline = ContinuousClock.now + .seconds(3)
        while !recent.hasEnded(pid: pid), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let report = recent.take(pid: pid)
        fallback.critical("worker ended unexpectedly", metadata: [
            LogKey.pid: "\(pid)", LogKey.reason: "\(reason)", "error_type": "worker-exit",
            "last_output": .array(report.before.suffix(30).map { .string($0) }),
            "backtrace": .array(report.backtrace.map { .string($0) }),
        ])
    }
}
