import Foundation
import Testing

@testable import Supervisor

@Suite struct ConfigLoaderTests {
    func file(_ json: String) throws -> String {
        let path = NSTemporaryDirectory() + "config-\(UUID().uuidString).json"
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func defaultsFollowTheContract() async throws {
        let loaded = try await ConfigLoader.load(file: nil, environment: [:], workingDirectory: "/srv/bot")
        let c = loaded.config
        #expect(c.dataDir == "/srv/bot/data")
        #expect(c.runtimeDir == "/srv/bot/data/run")
        #expect(c.statusSocket == "/srv/bot/data/run/supervisor.sock")
        #expect(c.worker.heartbeatInterval == .seconds(5))
        #expect(c.worker.heartbeatTimeout == .seconds(15))
        #expect(c.worker.stopGrace == .seconds(10))
        #expect(c.health.interval == .seconds(300))
        #expect(c.backup.locations == ["/srv/bot/data/backups"])
        #expect(c.backup.dailyAt == "04:00")
        #expect(c.backup.keepDays == 7)
        #expect(c.logs.dir == "/srv/bot/data/logs")
        #expect(c.logs.keepDays == 30)
        #expect(c.discord.mode == "sandbox")
    }

    @Test func environmentOverridesTheFile() async throws {
        let path = try file(#"{"dataDir": "/var/lib/bot", "worker": {"heartbeatTimeoutSeconds": 20}}"#)
        let loaded = try await ConfigLoader.load(file: path, environment: ["WORKER_HEARTBEAT_TIMEOUT_SECONDS": "30", "DISCORD_TOKEN": "abc"], workingDirectory: "/")
        #expect(loaded.config.dataDir == "/var/lib/bot")
        #expect(loaded.config.worker.heartbeatTimeout == .seconds(30))
        #expect(loaded.config.discord.mode == "discord")
        #expect(loaded.config.discord.token?.reveal() == "abc")
    }

    @Test func aValueOfTheWrongTypeNamesItsKey() async throws {
        let path = try file(#"{"worker": {"heartbeatTimeoutSeconds": "soon"}}"#)
        await #expect {
            try await ConfigLoader.load(file: path, environment: [:], workingDirectory: "/")
        } throws: { error in
            "\(error)".contains("worker.heartbeatTimeoutSeconds")
        }
    }

    @Test func aBadEnvironmentValueNamesItsKey() async throws {
        await #expect {
            try await ConfigLoader.load(file: nil, environment: ["WORKER_STOP_GRACE_SECONDS": "ten"], workingDirectory: "/")
        } throws: { error in
            "\(error)".contains("worker.stopGraceSeconds")
        }
    }

    @Test func malformedJSONIsAClearError() async throws {
        let path = try file(#"{"dataDir": "#)
        await #expect {
            try await ConfigLoader.load(file: path, environment: [:], workingDirectory: "/")
        } throws: { error in
            "\(error)".contains("is not valid JSON")
        }
    }

    @Test func aTimeoutNotAboveTheIntervalIsRefused() async throws {
        let path = try file(#"{"worker": {"heartbeatIntervalSeconds": 5, "heartbeatTimeoutSeconds": 5}}"#)
        await #expect {
            try await ConfigLoader.load(file: path, environment: [:], workingDirectory: "/")
        } throws: { error in
            "\(error)".contains("worker.heartbeatTimeoutSeconds")
        }
    }

    @Test func productionModeWithoutATokenIsRefused() async throws {
        await #expect {
            try await ConfigLoader.load(file: nil, environment: ["DISCORD_MODE": "discord"], workingDirectory: "/")
        } throws: { error in
            "\(error)".contains("DISCORD_TOKEN")
        }
    }

    @Test func operatorCommandsFindTheSocketWithoutTheToken() async throws {
        // An operator's shell has no DISCORD_TOKEN: `restore --config` must still find the socket.
        let loaded = try await ConfigLoader.load(file: nil, environment: ["DISCORD_MODE": "discord", "DATA_DIR": "/srv/bot"], workingDirectory: "/", needsToken: false)
        #expect(loaded.config.statusSocket == "/srv/bot/run/supervisor.sock")
    }

    @Test func unknownKeysAreWarnedAbout() async throws {
        let path = try file(#"{"worker": {"heartbeatTimeoutSecond": 20}, "colour": "blue"}"#)
        let loaded = try await ConfigLoader.load(file: path, environment: [:], workingDirectory: "/")
        #expect(loaded.warnings.count == 2)
        #expect(loaded.warnings.contains { $0.contains("\"worker.heartbeatTimeoutSecond\"") })
        #expect(loaded.warnings.contains { $0.contains("\"colour\"") })
    }

    @Test func theTokenNeverAppearsInTheConfigsDescription() async throws {
        let loaded = try await ConfigLoader.load(file: nil, environment: ["DISCORD_TOKEN": "secret-token-value"], workingDirectory: "/")
        #expect(!"\(loaded.config)".contains("secret-token-value"))
        #expect(!String(reflecting: loaded.config).contains("secret-token-value"))
    }
}
