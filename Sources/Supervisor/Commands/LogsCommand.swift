import ArgumentParser
import FoundationEssentials
import Glibc
import IPC
import Synchronization

/// `bot-supervisor logs [SYSTEM...] [-f] [--level L] [--since TIME] [--grep TEXT] [--json]`:
/// the log files of `logs.dir` read directly (the supervisor may be stopped), rotated and rolled
/// files included, merged in time order.
struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Print the log lines of logs.dir, rotated files included, merged in time order; -f follows.",
        discussion: """
            Reads the files directly: it works with the supervisor stopped. Lines are printed as \
            `DATE TIME LEVEL system message key=value …` in local time, the level coloured at a \
            terminal (unless NO_COLOR is set). errors.log holds copies of the other files' error \
            lines: they are shown once. A line that is not JSON (torn, or written by something \
            else) is printed as it is after the marker [not JSON in FILE]; only --since and \
            --grep filter it.

            Examples:
              bot-supervisor logs xp verification --since 2h
              bot-supervisor logs --level warning -f
              bot-supervisor logs --grep 1234567890 --since today --json
            """
    )

    @Argument(help: "Only these systems (bot, database, xp, verification, role_connections, audit, errors, supervisor, …); default: all.")
    var systems: [String] = []

    @Flag(name: [.customShort("f"), .customLong("follow")], help: "After the history, print new lines as they are written, across rotations, until Ctrl-C.")
    var follow = false

    @Option(name: .long, help: "This level and more severe: trace, debug, info, notice, warning (warn), error, critical.")
    var level: String?

    @Option(name: .long, help: "Lines from this time on: ISO 8601 (2026-12-01T18:30:00Z), a time ago (30s, 10m, 2h, 1d) or today.")
    var since: String?

    @Option(name: .long, help: "Lines whose message or a field value contains this text (case-insensitive).")
    var grep: String?

    @Option(name: .long, help: "The supervisor's config file, to find logs.dir.")
    var config: String?

    @Option(name: .long, help: "Accepted like the other operator commands; logs reads the files, not the socket.")
    var socket: String?

    @Flag(name: .long, help: "Print the stored JSON lines as they are, one object per line (JSON Lines: unlike the other commands, not one JSON document); a line that is not JSON becomes {\"unparsed\":true,\"raw\":…}.")
    var json = false

    func run() async throws {
        let query: LogQuery
        do {
            query = LogQuery(
                systems: systems.isEmpty ? nil : systems,
                minimumLevel: try level.map { text throws(LogQuery.BadValue) in try LogQuery.level(text) },
                since: try since.map { text throws(LogQuery.BadValue) in try LogQuery.since(text, now: Date()) },
                grep: try grep.map { text throws(LogQuery.BadValue) in try LogQuery.grep(text) }
            )
        } catch {
            StandardError.write("bot-supervisor: \(error)\n")
            throw ExitCode(2)
        }
        let directory = try await ConfigLoader.load(file: config, needsToken: false).config.logs.dir
        let color = !json && isatty(STDOUT_FILENO) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
        // `logs | head`: a closed stdout ends the reading quietly (exit 0), not with SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        let output = LogOutput()
        let render: (LogRecord) -> Bool = { record in
            output.write(json ? LogRender.json(record) : LogRender.text(record, color: color))
        }
        if follow { LogsCommand.catchStopSignals() }
        let follower: LogFollower?
        do {
            follower = try LogReader(directory: directory, query: query).history(follow: follow, emit: render)
        } catch .unknownSystems(let names, let present, let directory) {
            StandardError.write("bot-supervisor: \(LogReaderError.unknownSystems(names, present: present, directory: directory))\n")
            throw ExitCode(2)
        } catch {
            StandardError.write("bot-supervisor: \(error)\n")
            throw ExitCode(1)
        }
        guard output.flush() else { return }
        guard let follower else { return }
        while !LogsCommand.stopRequested.load(ordering: .relaxed) {
            for record in follower.poll() where !render(record) { return }
            guard output.flush() else { return }
            try? await Task.sleep(for: .milliseconds(200))
        }
        _ = output.flush()
    }

    /// Set by SIGINT or SIGTERM: `-f` ends there, with exit 0.
    static let stopRequested = Atomic<Bool>(false)

    static func catchStopSignals() {
        for signal in [SIGINT, SIGTERM] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { _ in LogsCommand.stopRequested.store(true, ordering: .relaxed) }
            sigemptyset(&action.sa_mask)
            sigaction(signal, &action, nil)
        }
    }
}

/// Buffered writes to stdout; false once stdout is closed (`logs | head`): the reading stops.
final class LogOutput {
    private var buffer: [UInt8] = []
    private var closed = false

    func write(_ text: String) -> Bool {
        buffer.append(contentsOf: text.utf8)
        return buffer.count < 1 << 16 || flush()
    }

    func flush() -> Bool {
        var offset = 0
        while offset < buffer.count, !closed {
            let written = buffer.withUnsafeBytes { Glibc.write(STDOUT_FILENO, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0, errno == EINTR { continue }
            if written <= 0 { closed = true } else { offset += written }
        }
        buffer.removeAll(keepingCapacity: true)
        return !closed
    }
}
