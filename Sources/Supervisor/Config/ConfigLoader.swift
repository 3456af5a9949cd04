import Configuration
import FoundationEssentials
import Glibc
import IPC
import Synchronization
import SystemPackage

/// A configuration that cannot be used: exit status 2, and a message naming the key.
struct ConfigError: Error, CustomStringConvertible {
    var description: String
}

/// Reads `SupervisorConfig` from an optional JSON file with environment variables over it
/// (`worker.heartbeatTimeoutSeconds` → `WORKER_HEARTBEAT_TIMEOUT_SECONDS`).
///
/// swift-configuration falls back to the default when a value has the wrong type; that would
/// hide an operator's mistake, so every such fallback is collected and reported as an error.
enum ConfigLoader {
    /// Every key docs/contract.md names, plus this project's own. A key in the file that is not here
    /// is reported as a warning (an older release must still start with a newer release's file).
    static let knownKeys: Set<String> = [
        "dataDir", "runtimeDir", "statusSocket", "control.readTimeoutSeconds",
        "worker.executable", "worker.heartbeatIntervalSeconds", "worker.heartbeatTimeoutSeconds",
        "worker.stopGraceSeconds", "worker.restartDelaySeconds", "worker.restartDelayMaxSeconds",
        "health.intervalSeconds",
        "backup.locations", "backup.dailyAt", "backup.keepDays",
        "logs.dir", "logs.keepDays", "logs.maxBytes",
        "alerts.webhookURL", "alerts.heartbeatURL", "metrics.listen", "dashboard.listen",
        "worker.memoryMaxBytes",
        "discord.token", "discord.mode", "discord.gatewayURL", "discord.apiBaseURL", "discord.guildIDs",
        "discord.shards", "sandbox.members", "sandbox.activityPerMinute", "sandbox.guilds",
        "deploy.root", "deploy.readyTimeoutSeconds", "deploy.probationSeconds", "deploy.rehearsalSeconds",
        "journal.enabled", "journal.segmentMaxBytes",
        "replicas.targets", "replicas.rcloneConfig", "replicas.keyFile", "replicas.maxLagSeconds", "replicas.drillIntervalHours",
    ]

    struct Loaded {
        var config: SupervisorConfig
        var warnings: [String]
    }

    /// - Parameter needsToken: false for the operator commands, which only find the socket in the
    ///   config: an operator's shell has no `DISCORD_TOKEN` (systemd keeps it in the unit's
    ///   environment file), and needs none.
    static func load(
        file: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        workingDirectory: String = FileManager.default.currentDirectoryPath,
        needsToken: Bool = true
    ) async throws -> Loaded {
        var providers: [any ConfigProvider] = [
            EnvironmentVariablesProvider(
                environmentVariables: environment,
                secretsSpecifier: .specific(["DISCORD_TOKEN", "ALERTS_WEBHOOK_URL", "ALERTS_HEARTBEAT_URL"])
            )
        ]
        var warnings: [String] = []
        var fileObject: [String: JSONValue] = [:]
        if let file {
            let absolute = Self.absolute(file, in: workingDirectory)
            guard FileManager.default.fileExists(atPath: absolute) else {
                throw ConfigError(description: "config file \(absolute) does not exist; pass an existing file with --config, or leave --config out to use the defaults")
            }
            do {
                fileObject = (try? Self.object(inFile: absolute)) ?? [:]
                providers.append(try await Self.fileProvider(absolute, object: fileObject))
            } catch let error as ConfigError {
                throw error
            } catch {
                throw ConfigError(description: "config file \(absolute) is not valid JSON (\(error)); fix the file or restore it from deploy/config.example.json")
            }
            warnings += try Self.unknownKeys(inFile: absolute).map {
                "config file \(absolute): unknown key \"\($0)\" is ignored; check its spelling against docs/contract.md"
            }
        }
        let problems = ProblemCollector()
        let reader = ConfigReader(providers: providers, accessReporter: problems)
        var config = try Self.read(reader, workingDirectory: workingDirectory)
        config.replicas.targets = try ReplicaTargets.parse(file: fileObject, environment: environment)
        config.discord.shards = try Self.shards(file: fileObject, environment: environment)
        if let problem = problems.first {
            throw ConfigError(description: problem)
        }
        try Self.validate(config, needsToken: needsToken)
        return Loaded(config: config, warnings: warnings)
    }

    /// `discord.shards`: `"auto"` (or absent) for Discord's recommendation, else a whole number of
    /// shards from 1 to 4096. Read from the file's JSON itself, since the value is a string or a number.
    static func shards(file: [String: JSONValue], environment: [String: String]) throws -> Int? {
        let key = "discord.shards"
        var value: JSONValue?
        if let text = environment["DISCORD_SHARDS"] {
            value = Int(text).map(JSONValue.integer) ?? .string(text)
        } else if case .object(let discord) = file["discord"] {
            value = discord["shards"]
        } else {
            value = file[key]
        }
        switch value {
        case nil, .null?:
            return nil
        case .string(let text)? where text == "auto":
            return nil
        case .integer(let count)? where (1...4096).contains(count):
            return count
        default:
            throw ConfigError(description: "config key \"\(key)\" must be \"auto\" (Discord's recommendation) or a number of shards from 1 to 4096; got \(value.map { "\($0)" } ?? "nothing")")
        }
    }

    private static func read(_ r: ConfigReader, workingDirectory: String) throws -> SupervisorConfig {
        func path(_ value: String) -> String { Self.absolute(value, in: workingDirectory) }
        func seconds(_ key: ConfigKey, _ fallback: Double) -> Duration {
            .milliseconds(Int64((r.double(forKey: key, default: fallback) * 1000).rounded()))
        }
        let dataDir = path(r.string(forKey: "dataDir", default: "data"))
        let runtimeDir = path(r.string(forKey: "runtimeDir", default: dataDir + "/run"))
        let token = r.string(forKey: "discord.token", isSecret: true).flatMap { $0.isEmpty ? nil : Secret($0) }
        let deployRoot = r.string(forKey: "deploy.root").map(path) ?? Self.installedReleaseRoot()
        var config = SupervisorConfig(
            dataDir: dataDir,
            runtimeDir: runtimeDir,
            statusSocket: path(r.string(forKey: "statusSocket", default: runtimeDir + "/supervisor.sock")),
            controlReadTimeout: seconds("control.readTimeoutSeconds", 10),
            worker: .init(
                // Installed: through `current`, so that a deploy's switch takes effect at the next spawn.
                executable: path(r.string(forKey: "worker.executable", default: deployRoot.map { $0 + "/current/bin/bot-worker" } ?? Self.defaultWorkerExecutable())),
                heartbeatInterval: seconds("worker.heartbeatIntervalSeconds", 5),
                heartbeatTimeout: seconds("worker.heartbeatTimeoutSeconds", 15),
                stopGrace: seconds("worker.stopGraceSeconds", 10),
                restartDelay: seconds("worker.restartDelaySeconds", 1),
                restartDelayMax: seconds("worker.restartDelayMaxSeconds", 60)
            ),
            logs: .init(
                dir: path(r.string(forKey: "logs.dir", default: dataDir + "/logs")),
                keepDays: r.int(forKey: "logs.keepDays", default: 30)
            ),
            health: .init(interval: seconds("health.intervalSeconds", 300)),
            backup: .init(
                locations: r.stringArray(forKey: "backup.locations", default: [dataDir + "/backups"]).map(path),
                dailyAt: r.string(forKey: "backup.dailyAt", default: "04:00"),
                keepDays: r.int(forKey: "backup.keepDays", default: 7)
            ),
            alertsWebhookURL: r.string(forKey: "alerts.webhookURL", isSecret: true).map(Secret.init),
            metricsListen: r.string(forKey: "metrics.listen"),
            discord: .init(
                token: token,
                mode: r.string(forKey: "discord.mode", default: token == nil ? "sandbox" : "discord"),
                gatewayURL: r.string(forKey: "discord.gatewayURL"),
                apiBaseURL: r.string(forKey: "discord.apiBaseURL"),
                guildIDs: r.stringArray(forKey: "discord.guildIDs", default: []),
                sandboxMembers: r.int(forKey: "sandbox.members", default: 40),
                sandboxActivityPerMinute: r.int(forKey: "sandbox.activityPerMinute", default: 30),
                sandboxGuilds: r.int(forKey: "sandbox.guilds", default: 1)
            )
        )
        config.deploy = .init(
            root: deployRoot,
            readyTimeout: seconds("deploy.readyTimeoutSeconds", 60),
            probation: seconds("deploy.probationSeconds", 120),
            rehearsal: seconds("deploy.rehearsalSeconds", 60)
        )
        config.journal = .init(
            enabled: r.bool(forKey: "journal.enabled", default: true),
            segmentMaxBytes: r.int(forKey: "journal.segmentMaxBytes", default: 64 << 20)
        )
        config.alertsHeartbeatURL = r.string(forKey: "alerts.heartbeatURL", isSecret: true).flatMap { $0.isEmpty ? nil : Secret($0) }
        let listen = r.string(forKey: "dashboard.listen", default: "127.0.0.1:8080")
        config.dashboardListen = listen.isEmpty ? nil : listen
        config.worker.memoryMaxBytes = r.int(forKey: "worker.memoryMaxBytes").map(Int64.init)
        config.logs.maxBytes = Int64(r.int(forKey: "logs.maxBytes", default: 1 << 30))
        config.replicas.rcloneConfig = r.string(forKey: "replicas.rcloneConfig").map(path)
        config.replicas.keyFile = path(r.string(forKey: "replicas.keyFile", default: dataDir + "/replica.key"))
        config.replicas.maxLagSeconds = r.double(forKey: "replicas.maxLagSeconds", default: 5)
        config.replicas.drillIntervalHours = r.double(forKey: "replicas.drillIntervalHours", default: 24)
        return config
    }

    private static func validate(_ c: SupervisorConfig, needsToken: Bool) throws {
        func require(_ condition: Bool, _ message: String) throws {
            if !condition { throw ConfigError(description: message) }
        }
        try require(c.worker.heartbeatInterval > .zero, "worker.heartbeatIntervalSeconds must be greater than 0")
        try require(
            c.worker.heartbeatTimeout > c.worker.heartbeatInterval,
            "worker.heartbeatTimeoutSeconds (\(c.worker.heartbeatTimeout)) must be greater than worker.heartbeatIntervalSeconds (\(c.worker.heartbeatInterval)), or a healthy worker would be replaced"
        )
        try require(c.worker.stopGrace >= .zero, "worker.stopGraceSeconds must not be negative")
        try require(c.worker.restartDelay >= .zero, "worker.restartDelaySeconds must not be negative")
        try require(c.worker.restartDelayMax >= c.worker.restartDelay, "worker.restartDelayMaxSeconds must be at least worker.restartDelaySeconds")
        try require(c.controlReadTimeout > .zero, "control.readTimeoutSeconds must be greater than 0")
        try require(c.health.interval > .zero, "health.intervalSeconds must be greater than 0")
        try require(c.logs.keepDays >= 1, "logs.keepDays must be at least 1")
        try require(c.backup.keepDays >= 1, "backup.keepDays must be at least 1")
        try require(c.journal.segmentMaxBytes >= 65536, "journal.segmentMaxBytes must be at least 65536")
        try require(c.replicas.maxLagSeconds > 0, "replicas.maxLagSeconds must be greater than 0")
        try require(c.replicas.drillIntervalHours > 0, "replicas.drillIntervalHours must be greater than 0")
        try require(!c.backup.locations.isEmpty, "backup.locations must name at least one directory")
        try require(Self.isClockTime(c.backup.dailyAt), "backup.dailyAt must be a local time as \"HH:MM\", e.g. \"04:00\"; got \"\(c.backup.dailyAt)\"")
        try require(["discord", "sandbox"].contains(c.discord.mode), "discord.mode must be \"discord\" or \"sandbox\"; got \"\(c.discord.mode)\"")
        try require(
            c.discord.mode == "sandbox" || c.discord.token != nil || !needsToken,
            "discord.mode is \"discord\" but no token is set: put it in DISCORD_TOKEN (or discord.token), or set discord.mode to \"sandbox\""
        )
        try require((1...5000).contains(c.discord.sandboxMembers), "sandbox.members must be between 1 and 5000; got \(c.discord.sandboxMembers)")
        try require((1...100_000).contains(c.discord.sandboxGuilds), "sandbox.guilds must be between 1 and 100000; got \(c.discord.sandboxGuilds)")
        try require(c.discord.sandboxActivityPerMinute >= 0, "sandbox.activityPerMinute must not be negative (0 turns the simulated members off)")
        for id in c.discord.guildIDs where UInt64(id) == nil {
            throw ConfigError(description: "discord.guildIDs: \"\(id)\" is not a Discord id (a number such as \"1187654321098765432\")")
        }
        for (key, url) in [("discord.gatewayURL", c.discord.gatewayURL), ("discord.apiBaseURL", c.discord.apiBaseURL)] {
            if let url, !(url.hasPrefix("ws://") || url.hasPrefix("wss://") || url.hasPrefix("http://") || url.hasPrefix("https://")) {
                throw ConfigError(description: "\(key): \"\(url)\" is not a URL; give a full URL such as wss://gateway.discord.gg or https://discord.com/api/v10")
            }
        }
        if let listen = c.metricsListen, MetricsServer.parse(listen) == nil {
            throw ConfigError(description: "metrics.listen: \"\(listen)\" is not host:port; use e.g. \"127.0.0.1:9464\"")
        }
        if let listen = c.dashboardListen, MetricsServer.parse(listen) == nil {
            throw ConfigError(description: "dashboard.listen: \"\(listen)\" is not host:port; use e.g. \"127.0.0.1:8080\", or \"\" to turn the dashboard off")
        }
        if let url = c.alertsHeartbeatURL, !(url.reveal().hasPrefix("https://") || url.reveal().hasPrefix("http://")) {
            throw ConfigError(description: "alerts.heartbeatURL is not an http(s) URL; give the whole ping URL of your check, e.g. https://hc-ping.com/<uuid>")
        }
        if let limit = c.worker.memoryMaxBytes, limit < 16 << 20 {
            throw ConfigError(description: "worker.memoryMaxBytes must be at least 16777216 (16 MiB); got \(limit). Leave it out for no limit")
        }
        try require(c.logs.maxBytes >= 1 << 20, "logs.maxBytes must be at least 1048576 (1 MiB); got \(c.logs.maxBytes)")
        if let url = c.alertsWebhookURL, !(url.reveal().hasPrefix("https://") || url.reveal().hasPrefix("http://")) {
            throw ConfigError(description: "alerts.webhookURL is not an http(s) URL; copy the whole URL from Server Settings → Integrations → Webhooks")
        }
        // sockaddr_un.sun_path holds 108 bytes with the terminating NUL.
        for (key, socket) in [("statusSocket", c.statusSocket), ("runtimeDir", c.workerSocket)] where socket.utf8.count > 107 {
            throw ConfigError(description: "\(key): the socket path \(socket) is longer than 107 bytes, the limit of a Unix socket path; choose a shorter directory")
        }
    }

    private static func isClockTime(_ text: String) -> Bool {
        let parts = text.split(separator: ":")
        guard parts.count == 2, parts.allSatisfy({ $0.count == 2 }),
              let hour = Int(parts[0]), let minute = Int(parts[1])
        else { return false }
        return (0..<24).contains(hour) && (0..<60).contains(minute)
    }

    /// The file's provider. swift-configuration takes no array of objects, so `replicas.targets`
    /// (read by `ReplicaTargets`) is left out of the copy it reads.
    private static func fileProvider(_ path: String, object: [String: JSONValue]) async throws -> FileProvider<JSONSnapshot> {
        guard case .object(var replicas) = object["replicas"], replicas["targets"] != nil else {
            return try await FileProvider<JSONSnapshot>(filePath: FilePath(path))
        }
        replicas["targets"] = nil
        var stripped = object
        stripped["replicas"] = .object(replicas)
        // The copy is an unnamed file (O_TMPFILE, Linux's 0o20000000 | O_DIRECTORY; Glibc's macro
        // is not imported), in memory where /dev/shm is, read through /proc: the file may hold
        // secrets, and no name of it is ever left behind.
        let unnamed = Int32(0o20000000) | O_DIRECTORY | O_RDWR | O_CLOEXEC
        var fd = open("/dev/shm", unnamed, 0o600)
        if fd < 0 { fd = open("/tmp", unnamed, 0o600) }
        guard fd >= 0 else { throw ConfigError(description: "config file \(path) cannot be read: an unnamed copy in /dev/shm or /tmp: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(try JSONEncoder().encode(JSONValue.object(stripped)))
        guard write(fd, bytes, bytes.count) == bytes.count else {
            throw ConfigError(description: "config file \(path) cannot be read: write: \(String(cString: strerror(errno)))")
        }
        let copy = "/proc/self/fd/\(fd)"
        return try await FileProvider<JSONSnapshot>(filePath: FilePath(copy))
    }

    /// The top-level object of a JSON config file.
    private static func object(inFile path: String) throws -> [String: JSONValue] {
        guard let data = FileManager.default.contents(atPath: path),
              case .object(let object) = try? JSONLine.decode(JSONValue.self, from: data)
        else {
            throw ConfigError(description: "config file \(path) must hold one JSON object, like deploy/config.example.json")
        }
        return object
    }

    /// The keys of a JSON file, flattened with dots, that are neither known nor below a known key.
    private static func unknownKeys(inFile path: String) throws -> [String] {
        guard let data = FileManager.default.contents(atPath: path),
              case .object(let object) = try? JSONLine.decode(JSONValue.self, from: data)
        else {
            throw ConfigError(description: "config file \(path) must hold one JSON object, like deploy/config.example.json")
        }
        var unknown: [String] = []
        func walk(_ object: [String: JSONValue], prefix: String) {
            for (key, value) in object {
                let full = prefix.isEmpty ? key : prefix + "." + key
                if knownKeys.contains(full) { continue }
                if case .object(let nested) = value, knownKeys.contains(where: { $0.hasPrefix(full + ".") }) {
                    walk(nested, prefix: full)
                } else {
                    unknown.append(full)
                }
            }
        }
        walk(object, prefix: "")
        return unknown.sorted()
    }

    static func absolute(_ path: String, in directory: String) -> String {
        let joined = path.hasPrefix("/") ? path : directory + "/" + path
        return URL(fileURLWithPath: joined).standardizedFileURL.path
    }

    /// `<root>` when this binary is `<root>/releases/<version>/bin/bot-supervisor` and
    /// `<root>/current` exists: an installed release (deploy/install.sh).
    static func installedReleaseRoot() -> String? {
        guard let me = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return nil }
        let parts = me.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 5, parts[parts.count - 2] == "bin", parts[parts.count - 4] == "releases" else { return nil }
        let root = parts.dropLast(4).joined(separator: "/")
        return FileManager.default.fileExists(atPath: root + "/current") ? root : nil
    }

    /// `bot-worker` beside the running `bot-supervisor` binary.
    static func defaultWorkerExecutable() -> String {
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: me).deletingLastPathComponent().appendingPathComponent("bot-worker").path
    }
}

/// Records every key whose value was present but could not be used.
private final class ProblemCollector: AccessReporter, Sendable {
    private let problems = Mutex<[String]>([])

    var first: String? { problems.withLock { $0.first } }

    func report(_ event: AccessEvent) {
        let key = event.metadata.key.components.joined(separator: ".")
        var message: String?
        for result in event.providerResults {
            if case .failure(let error) = result.result {
                message = "config key \"\(key)\" (from \(result.providerName)) has a value of the wrong type: \(error)"
            }
        }
        if message == nil, let error = event.conversionError {
            message = "config key \"\(key)\" has a value that cannot be used: \(error)"
        }
        if let message {
            problems.withLock { $0.append(message) }
        }
    }
}
