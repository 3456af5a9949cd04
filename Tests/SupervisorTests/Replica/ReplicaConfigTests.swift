import Foundation
import Testing

@testable import Supervisor

@Suite struct ReplicaConfigTests {
    func file(_ json: String) throws -> String {
        let path = NSTemporaryDirectory() + "config-\(UUID().uuidString).json"
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func problem(_ json: String, environment: [String: String] = [:]) async -> String? {
        do {
            _ = try await ConfigLoader.load(file: try file(json), environment: environment, workingDirectory: "/srv/bot")
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func defaultsAreNoReplicasAndTheKeyInTheDataDir() async throws {
        let c = try await ConfigLoader.load(file: nil, environment: [:], workingDirectory: "/srv/bot").config
        #expect(c.replicas.targets.isEmpty)
        #expect(c.replicas.keyFile == "/srv/bot/data/replica.key")
        #expect(c.replicas.maxLagSeconds == 5)
        #expect(c.replicas.drillIntervalHours == 24)
        #expect(c.replicas.rcloneConfig == nil)
    }

    @Test func targetsAndTheOtherKeysAreRead() async throws {
        let loaded = try await ConfigLoader.load(file: try file("""
            {"dataDir": "d", "backup": {"keepDays": 3},
             "replicas": {"targets": [{"name": "offsite", "remote": "s3:bucket/bot"}, {"name": "nas-2", "remote": "sftp:/srv/b"}],
                          "rcloneConfig": "rclone.conf", "keyFile": "k/replica.key", "maxLagSeconds": 2, "drillIntervalHours": 12}}
            """), environment: [:], workingDirectory: "/srv/bot")
        let c = loaded.config
        #expect(loaded.warnings.isEmpty)
        #expect(c.backup.keepDays == 3)
        #expect(c.replicas.targets == [.init(name: "offsite", remote: "s3:bucket/bot"), .init(name: "nas-2", remote: "sftp:/srv/b")])
        #expect(c.replicas.rcloneConfig == "/srv/bot/rclone.conf")
        #expect(c.replicas.keyFile == "/srv/bot/k/replica.key")
        #expect(c.replicas.maxLagSeconds == 2)
        #expect(c.replicas.drillIntervalHours == 12)
    }

    @Test func theEnvironmentGivesTargetsAsJSON() async throws {
        let c = try await ConfigLoader.load(file: nil, environment: ["REPLICAS_TARGETS": #"[{"name":"a","remote":"r:p"}]"#], workingDirectory: "/srv/bot").config
        #expect(c.replicas.targets == [.init(name: "a", remote: "r:p")])
    }

    @Test func badTargetsNameTheKey() async {
        #expect(await problem(#"{"replicas": {"targets": [{"name": "Off Site", "remote": "s3:b"}]}}"#)?.contains("replicas.targets[0].name") == true)
        #expect(await problem(#"{"replicas": {"targets": [{"name": "a", "remote": "s3:b"}, {"name": "a", "remote": "s3:c"}]}}"#)?.contains("names two replicas") == true)
        #expect(await problem(#"{"replicas": {"targets": [{"name": "a", "remote": "no-colon"}]}}"#)?.contains("replicas.targets[0].remote") == true)
        #expect(await problem(#"{"replicas": {"targets": [{"name": "a", "remote": "s3:b", "key": "x"}]}}"#)?.contains("unknown field") == true)
        #expect(await problem(#"{"replicas": {"targets": "s3:b"}}"#)?.contains("replicas.targets") == true)
        #expect(await problem(#"{"replicas": {"maxLagSeconds": 0}}"#)?.contains("replicas.maxLagSeconds") == true)
    }
}
