import Logging

/// Metadata keys of the supervisor's log lines, in one place.
enum LogKey {
    static let pid = "pid"
    static let uid = "uid"
    static let command = "command"
    static let outcome = "outcome"
    static let error = "error"
    static let state = "state"
    static let reason = "reason"
    static let alert = "alert"
    static let severity = "severity"
    static let stream = "stream"
    static let path = "path"
    static let delay = "delay"
    static let status = "status"
    static let replica = "replica"
}
