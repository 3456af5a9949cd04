import FoundationEssentials
import IPC
import Logging

/// A swift-log backend writing one JSON object per line into the system's file under `logs.dir`:
/// `ts` (ISO 8601 UTC, ms), `level` (DEBUG, INFO, WARNING, ERROR, CRITICAL), `system`, `message`,
/// then the metadata (`guild_id`, `user_id`, `command`, `error`, …) as fields.
///
/// Errors and criticals are written to `errors.log` as well. With `echo`, each line also goes to
/// stderr: with a syslog priority prefix under systemd (journald reads it), readable otherwise.
struct JSONLogHandler: LogHandler {
    let system: String
    let files: LogFiles
    let echo: Bool
    let errors: ErrorTracker?
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    init(system: String, files: LogFiles, echo: Bool, errors: ErrorTracker? = nil) {
        self.system = system
        self.files = files
        self.echo = echo
        self.errors = errors
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields = self.metadata
        if let extra = event.metadata { fields.merge(extra) { $1 } }
        let level = Self.name(event.level)
        let line = Self.render(ts: Self.timestamp(), level: level, system: system, message: "\(event.message)", fields: fields)
        files.append(line, to: system)
        if event.level >= .error, system != "errors" {
            files.append(line, to: "errors")
            errors?.record(system: system, message: "\(event.message)", errorType: fields["error_type"].map { "\($0)" }, detail: fields[LogKey.error].map { "\($0)" })
        }
        if echo {
            StandardError.write(Self.console(level: event.level, system: system, message: "\(event.message)", fields: fields))
        }
    }

    static func name(_ level: Logger.Level) -> String {
        switch level {
        case .trace, .debug: "DEBUG"
        case .info, .notice: "INFO"
        case .warning: "WARNING"
        case .error: "ERROR"
        case .critical: "CRITICAL"
        }
    }

    static func render(ts: String, level: String, system: String, message: String, fields: Logger.Metadata) -> String {
        LogLine.render(level: level, system: system, message: message, fields: fields.mapValues(JSONValue.init), ts: ts)
    }

    private static func console(level: Logger.Level, system: String, message: String, fields: Logger.Metadata) -> String {
        let detail = fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let text = detail.isEmpty ? "\(system): \(message)" : "\(system): \(message) \(detail)"
        if ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil {
            return "<\(priority(level))>\(text)\n"
        }
        return "\(timestamp()) \(name(level)) \(text)\n"
    }

    /// sd-daemon(3) priority prefixes.
    private static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    private static func timestamp() -> String { Timestamp.string() }
}
