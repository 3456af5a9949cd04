import IPC
import Logging

/// Writes each event as one JSON log line (`LogLine`) to stderr. The supervisor reads the
/// worker's stderr and appends each line to the file of its `system` (`bot.log`, `database.log`,
/// …), so only one process ever writes the log files.
struct StderrLogHandler: LogHandler {
    let system: String
    /// Where the rendered line goes: stderr, except in tests that file the lines themselves.
    var output: @Sendable (String) -> Void = { StandardError.write($0) }
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields = metadata
        if let extra = event.metadata { fields.merge(extra) { $1 } }
        let level = switch event.level {
        case .trace, .debug: "DEBUG"
        case .info, .notice: "INFO"
        case .warning: "WARNING"
        case .error: "ERROR"
        case .critical: "CRITICAL"
        }
        output(LogLine.render(level: level, system: system, message: "\(event.message)", fields: fields.mapValues(JSONValue.init)))
    }
}
