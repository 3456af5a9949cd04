/// The one format of every log line, in every file and from both processes: one JSON object with
/// `ts` (ISO 8601 UTC, ms), `level` (DEBUG, INFO, WARNING, ERROR, CRITICAL), `system`, `message`,
/// and the context (`guild_id`, `user_id`, `command`, `error`, …) as further fields.
public enum LogLine {
    public static let levels = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

    /// The systems whose lines the worker may send through its stderr; each has its own file.
    public static let workerSystems: Set<String> = ["bot", "database", "role_connections", "verification", "xp", "audit", "sandbox"]

    public static func render(level: String, system: String, message: String, fields: [String: JSONValue], ts: String = Timestamp.string()) -> String {
        var object = fields
        object["ts"] = .string(ts)
        object["level"] = .string(level)
        object["system"] = .string(system)
        object["message"] = .string(message)
        return (try? JSONLine.encode(JSONValue.object(object))) ?? "{\"message\":\"unencodable log line\"}\n"
    }

    /// A line the worker wrote, if it is a well-formed log line of one of `workerSystems`.
    public struct Parsed: Sendable {
        public var ts: String
        public var system: String
        public var level: String
        public var message: String
        /// The other fields, rendered as `key=value` pairs sorted by key.
        public var details: String
    }

    /// One string field of a log line, or nil.
    public static func field(_ name: String, in line: String) -> String? {
        guard line.contains("\"\(name)\""), let value = try? JSONLine.decode(JSONValue.self, from: line) else { return nil }
        return value[name]?.stringValue
    }

    public static func parse(_ line: String) -> Parsed? {
        guard line.hasPrefix("{"), let value = try? JSONLine.decode(JSONValue.self, from: line),
              case .string(let system) = value["system"], workerSystems.contains(system),
              case .string(let level) = value["level"], levels.contains(level),
              case .string(let message) = value["message"], case .string(let ts) = value["ts"],
              case .object(let fields) = value
        else { return nil }
        let details = fields.filter { !["ts", "level", "system", "message"].contains($0.key) }
            .sorted { $0.key < $1.key }
            .map { "\($0.key)=\($0.value.stringValue ?? "\($0.value)")" }
            .joined(separator: " ")
        return Parsed(ts: ts, system: system, level: level, message: message, details: details)
    }
}

import Logging

extension JSONValue {
    /// swift-log metadata as JSON: strings stay strings, nested values nest.
    public init(_ metadata: Logger.Metadata.Value) {
        switch metadata {
        case .string(let string): self = .string(string)
        case .stringConvertible(let convertible): self = .string("\(convertible)")
        case .array(let array): self = .array(array.map(JSONValue.init))
        case .dictionary(let dictionary): self = .object(dictionary.mapValues(JSONValue.init))
        }
    }
}

extension JSONValue {
    /// The string, when this is one.
    public var stringValue: String? {
        if case .string(let value) = self { value } else { nil }
    }
}
