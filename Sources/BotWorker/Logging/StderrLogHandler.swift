import FoundationEssentials
import IPC
import Logging

/// Writes `LEVEL message key=value …` lines to stderr, which the supervisor copies into bot.log.
struct StderrLogHandler: LogHandler {
    let system: String
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
        let detail = fields.sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
        // One line per event: the supervisor reads the worker's stderr line by line.
        StandardError.write("\(level) \(event.message)\(detail)".replacing("\n", with: " ") + "\n")
    }
}
