import FoundationEssentials
import IPC

/// `replicas.targets`: a list of `{"name": "offsite", "remote": "<rclone remote>:<path>"}`, from
/// the config file or, over it, `REPLICAS_TARGETS` holding the same list as JSON.
enum ReplicaTargets {
    typealias Target = SupervisorConfig.Replicas.Target

    static func parse(file: [String: JSONValue], environment: [String: String]) throws -> [Target] {
        let key = "replicas.targets"
        var value: JSONValue?
        if let text = environment["REPLICAS_TARGETS"] {
            guard let decoded = try? JSONLine.decode(JSONValue.self, from: Data(text.utf8)) else {
                throw ConfigError(description: "config key \"\(key)\" (from REPLICAS_TARGETS) is not JSON: give a list such as [{\"name\": \"offsite\", \"remote\": \"s3:bucket/bot\"}]")
            }
            value = decoded
        } else if case .object(let replicas) = file["replicas"] {
            value = replicas["targets"]
        }
        guard let value, value != .null else { return [] }
        guard case .array(let items) = value else {
            throw ConfigError(description: "config key \"\(key)\" must be a list of {\"name\", \"remote\"} objects")
        }
        var targets: [Target] = []
        for (index, item) in items.enumerated() {
            let at = "\(key)[\(index)]"
            guard case .object(let object) = item else {
                throw ConfigError(description: "config key \"\(at)\" must be an object {\"name\": \"offsite\", \"remote\": \"<rclone remote>:<path>\"}")
            }
            for field in object.keys where field != "name" && field != "remote" {
                throw ConfigError(description: "config key \"\(at)\" has an unknown field \"\(field)\"; only \"name\" and \"remote\" are read")
            }
            guard case .string(let name) = object["name"], isName(name) else {
                throw ConfigError(description: "config key \"\(at).name\" must be a name of lowercase letters, digits and dashes ([a-z0-9-]+), e.g. \"offsite\"")
            }
            guard !targets.contains(where: { $0.name == name }) else {
                throw ConfigError(description: "config key \"\(at).name\": \"\(name)\" names two replicas; each needs a name of its own")
            }
            guard case .string(let remote) = object["remote"], let colon = remote.firstIndex(of: ":"), colon != remote.startIndex else {
                throw ConfigError(description: "config key \"\(at).remote\" must be \"<rclone remote>:<path>\", a remote of the rclone config, e.g. \"offsite-s3:bot-backups/prod\"")
            }
            targets.append(Target(name: name, remote: remote))
        }
        return targets
    }

    static func isName(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2D }
    }
}
