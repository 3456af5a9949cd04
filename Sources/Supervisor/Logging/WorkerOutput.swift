import IPC
import Logging

/// Where the worker's stdout and stderr lines go. A well-formed log line of one of the worker's
/// systems is appended as it is to that system's file (and to `errors.log` when it is an error);
/// anything else (a crash backtrace, a stray print) is kept in `bot.log` with its stream and pid.
struct WorkerOutput: Sendable {
    let files: LogFiles
    let echo: Bool
    let fallback: Logger

    func accept(_ line: String, stream: String, pid: Int32) {
        guard let parsed = LogLine.parse(line) else {
            fallback.log(level: stream == "stderr" ? .warning : .info, "\(line)", metadata: [LogKey.stream: "\(stream)", LogKey.pid: "\(pid)"])
            return
        }
        files.append(line + "\n", to: parsed.system)
        if parsed.level == "ERROR" || parsed.level == "CRITICAL" {
            files.append(line + "\n", to: "errors")
        }
        if echo {
            let details = parsed.details.isEmpty ? "" : " " + parsed.details
            StandardError.write("\(parsed.ts) \(parsed.level) worker \(parsed.system): \(parsed.message)\(details)\n")
        }
    }
}
