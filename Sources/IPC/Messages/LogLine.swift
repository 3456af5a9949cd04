/// The one format of every log line, in every file and from both processes: one JSON object with
/// `ts` (ISO 8601 UTC, ms), `level` (DEBUG, INFO, WARNING, ERROR, CRITICAL), `system`, `message`,
/// and the context (`guild_id`, `user_id`, `command`, `error`, …) as further fields.
public enum LogLine {
    public static let levels = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

    /// The worker's own systems, whatever its features: each has its own file. A feature's system
    /// (`xp`, `verification`…) is announced in the worker's `hello` instead (`validate`), so that
    /// a feature added in one line of `FeatureCatalog` has its own file with nothing to edit here.
    public static let coreWorkerSystems: Set<String> = ["bot", "database", "audit", "sandbox"]

    /// Names a feature may not announce: the supervisor's own files, and the core systems.
    public static let reservedSystems: Set<String> = coreWorkerSystems.union(["supervisor", "errors"])

    /// A feature's log system the supervisor refuses, with why.
    public struct BadSystem: Error, Equatable, CustomStringConvertible {
        public var name: String
        public var reason: String
        public var description: String { "log system \"\(name)\" is refused: \(reason)" }
    }

    /// Checks the systems a worker announces: each must be a file name of its own, `[a-z]`
    /// then up to 31 of `[a-z0-9_]` (so never a path, never a dated file's `-`), and none may be
    /// reserved (lines of another system would land in `supervisor.log` or `errors.log`).
    public static func validate(announced systems: [String]) -> [BadSystem] {
        systems.compactMap { name in
            let bytes = Array(name.utf8)
            let lower = UInt8(ascii: "a")...UInt8(ascii: "z")
            let digits = UInt8(ascii: "0")...UInt8(ascii: "9")
            guard let first = bytes.first, lower.contains(first), bytes.count <= 32,
                  bytes.allSatisfy({ lower.contains($0) || digits.contains($0) || $0 == UInt8(ascii: "_") })
            else { return BadSystem(name: name, reason: "a log system is a lowercase letter then up to 31 lowercase letters, digits or _") }
            if reservedSystems.contains(name) { return BadSystem(name: name, reason: "the name is reserved (\(reservedSystems.sorted().joined(separator: ", ")))") }
            return nil
        }
    }

    public static func render(level: String, system: String, message: String, fields: [String: JSONValue], ts: String = Timestamp.string()) -> String {
        var object = fields
        object["ts"] = .string(ts)
        object["level"] = .string(level)
        object["system"] = .string(system)
        object["message"] = .string(message)
        return (try? JSONLine.encode(JSONValue.object(object))) ?? "{\"message\":\"unencodable log line\"}\n"
    }

    /// A line the worker wrote, if it is a well-formed log line of one of `systems`.
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

    /// - Parameter systems: the worker's: `coreWorkerSystems` and those its hello announced.
    public static func parse(_ line: String, systems: Set<String>) -> Parsed? {
        guard line.hasPrefix("{"), let value = try? JSONLine.decode(JSONValue.self, from: line),
              case .string(let system) = value["system"], systems.contains(system),
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
