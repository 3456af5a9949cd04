import BotData
import Foundation
import Glibc
import IPC
import TestSupport
import Testing

@testable import Supervisor

/// Nothing the bot stores is lost silently: damaged databases are found at start and restored
/// from verified backups, with the bad files kept in quarantine.
@Suite(.serialized) struct DataSafetyTests {
    enum Damage: String, CaseIterable, CustomStringConvertible {
        case pageOverwrite, truncation, zeroedHeader, deletion, staleWAL
        var description: String { rawValue }
    }

    /// A supervisor whose worker created the database and whose first backup exists, then stopped.
    func preparedHarness(config: [String: Any] = [:]) throws -> (SupervisorHarness, String) {
        let harness = try SupervisorHarness(config: config)
        try harness.startReady()
        let status = try harness.waitForStatus(timeout: .seconds(20), "the first backup") { ($0.backups?.count ?? 0) >= 1 && $0.operation == nil }
        let backup = try #require(status.backups?.last?.id)
        #expect(try harness.terminate() == 0)
        return (harness, backup)
    }

    var live: (SupervisorHarness) -> String { { $0.dataDir + "/bot.sqlite" } }

    @Test(arguments: Damage.allCases)
    func aDamagedDatabaseIsRestoredAtStart(_ damage: Damage) throws {
        let (harness, backup) = try preparedHarness()
        let path = live(harness)
        try damageFile(path, damage, scratch: harness.dir)

        try harness.startReady()
        let status = try harness.status()
        #expect(status.worker.state == .ready)
        #expect(status.alerts.contains { $0.severity == .critical && $0.message.contains("database restored from backup \(backup)") })
        #expect(DatabaseInspector.inspect(path: path, check: .integrity).isHealthy)
        let quarantined = (try? FileManager.default.contentsOfDirectory(atPath: harness.dataDir + "/quarantine")) ?? []
        if damage == .deletion {
            #expect(quarantined.isEmpty)
        } else {
            #expect(quarantined.count == 1)
            let folder = harness.dataDir + "/quarantine/" + quarantined[0]
            #expect(FileManager.default.fileExists(atPath: folder + "/bot.sqlite"))
            if damage == .staleWAL { #expect(FileManager.default.fileExists(atPath: folder + "/bot.sqlite-wal")) }
        }
        #expect(try harness.terminate() == 0)
    }

    @Test func withoutAUsableBackupTheBotStaysStoppedOnTheDamagedFile() throws {
        let (harness, _) = try preparedHarness()
        try FileManager.default.removeItem(atPath: harness.dataDir + "/backups")
        try damageFile(live(harness), .pageOverwrite, scratch: harness.dir)
        let sizeBefore = DurableSize.of(live(harness))

        try harness.start()
        let status = try harness.waitForStatus(timeout: .seconds(20), "failed") { $0.worker.state == .failed }
        #expect(status.worker.detail?.contains("never starts on an empty database") == true)
        #expect(status.alerts.contains { $0.severity == .critical && $0.message.contains("no restore was possible") })
        #expect(DurableSize.of(live(harness)) == sizeBefore)  // left in place for the operator
        #expect(harness.log("supervisor").filter { $0["message"] as? String == "worker started" }.count == 1)  // the first run only
        #expect(try harness.terminate() == 0)
    }

    @Test func damageFoundWhileRunningIsRepaired() throws {
        let (harness, backup) = try preparedHarness(config: ["health": ["intervalSeconds": 0.3]])
        try harness.startReady()
        let old = try #require(try harness.status().worker.pid)
        try damageFile(live(harness), .pageOverwrite, scratch: harness.dir)
        let status = try harness.waitForStatus(timeout: .seconds(20), "a restored database and a new worker") {
            $0.worker.state == .ready && $0.worker.pid != old
                && $0.alerts.contains { $0.message.contains("database restored from backup \(backup)") }
        }
        #expect(status.worker.lastExit?.reason.contains("stopped for checking the database") == true)
        #expect(DatabaseInspector.inspect(path: live(harness), check: .integrity).isHealthy)
        #expect(try harness.terminate() == 0)
    }

    @Test func aBackupOfABusyDatabaseFinishesAndVerifies() throws {
        let harness = try SupervisorHarness(config: ["backup": ["locations": ["DIR/b1", "DIR/b2"]]])
        try harness.rewriteConfig { $0.replacingOccurrences(of: "DIR", with: harness.dir) }
        try harness.startReady()
        try harness.waitForStatus(timeout: .seconds(20), "the first backup") { ($0.backups?.count ?? 0) >= 1 && $0.operation == nil }

        // A second process commits one row per transaction, as fast as it can, all along.
        let writer = try PythonScript.start("""
            import sqlite3, sys, os, time
            con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
            con.execute("CREATE TABLE IF NOT EXISTS load (id INTEGER PRIMARY KEY, body TEXT)")
            print("ready", flush=True)
            n = 0
            while not os.path.exists(sys.argv[2]):
                con.execute("INSERT INTO load (body) VALUES (?)", ("x" * 500,))
                n += 1
            print(n, flush=True)
            """, arguments: [live(harness), harness.dir + "/stop"])
        #expect(writer.readLine() == "ready")
        let backup = try SupervisorHarness.cli(["backup", "--json", "--config", harness.configPath])
        FileManager.default.createFile(atPath: harness.dir + "/stop", contents: nil)
        let written = Int(writer.readLine() ?? "") ?? 0
        #expect(backup.status == 0, "\(backup.stderr)")
        let report = try JSONDecoder().decode(BackupEngine.Report.self, from: Data(backup.stdout.utf8))
        #expect(report.results.count == 2 && report.results.allSatisfy(\.ok))
        #expect(written > 0)
        for location in ["b1", "b2"] {
            let copy = harness.dir + "/\(location)/\(report.id).sqlite"
            #expect(DatabaseInspector.inspect(path: copy, check: .integrity).isHealthy)
        }
        #expect(try harness.terminate() == 0)
    }

    @Test func aFailingLocationDoesNotStopTheOthers() throws {
        let harness = try SupervisorHarness(config: ["backup": ["locations": ["DIR/good", "DIR/not-a-directory/backups"]]])
        try harness.rewriteConfig { $0.replacingOccurrences(of: "DIR", with: harness.dir) }
        FileManager.default.createFile(atPath: harness.dir + "/not-a-directory", contents: Data("a file".utf8))
        try harness.startReady()
        try harness.waitForStatus(timeout: .seconds(20), "the first backup attempt") { $0.alerts.contains { $0.message.contains("not-a-directory") } }
        let backup = try SupervisorHarness.cli(["backup", "--config", harness.configPath])
        #expect(backup.status == 0, "\(backup.stderr)")
        #expect(backup.stdout.contains("FAILED \(harness.dir)/not-a-directory/backups"))
        #expect(backup.stdout.contains("ok     \(harness.dir)/good"))
        let status = try harness.status()
        #expect(status.backups?.last?.locations == [harness.dir + "/good"])
        #expect(status.alerts.contains { $0.severity == .warning && $0.message.contains("failed in \(harness.dir)/not-a-directory/backups") })
        #expect(try harness.terminate() == 0)
    }

    @Test func restoreBringsBackAChosenBackupAndKeepsTheReplacedFile() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        try harness.waitForStatus(timeout: .seconds(20), "the first backup") { ($0.backups?.count ?? 0) >= 1 && $0.operation == nil }
        let chosen = try SupervisorHarness.cli(["backup", "--json", "--config", harness.configPath])
        let id = try JSONDecoder().decode(BackupEngine.Report.self, from: Data(chosen.stdout.utf8)).id
        let startsAtBackup = try countRows(live(harness), "worker_starts")
        for _ in 0..<2 { #expect(try SupervisorHarness.cli(["restart-worker", "--config", harness.configPath]).status == 0) }
        #expect(try countRows(live(harness), "worker_starts") == startsAtBackup + 2)

        let refused = try SupervisorHarness.cli(["restore", "--backup", id, "--config", harness.configPath])
        #expect(refused.status == 2)  // no terminal, no --yes

        let restore = try SupervisorHarness.cli(["restore", "--backup", id, "--yes", "--config", harness.configPath])
        #expect(restore.status == 0, "\(restore.stderr)")
        #expect(restore.stdout.contains("database restored from backup \(id)"))
        // The restored data, plus the start of the worker that runs on it.
        #expect(try countRows(live(harness), "worker_starts") == startsAtBackup + 1)
        let quarantined = try FileManager.default.contentsOfDirectory(atPath: harness.dataDir + "/quarantine")
        #expect(quarantined.count == 1)
        #expect(try countRows(harness.dataDir + "/quarantine/\(quarantined[0])/bot.sqlite", "worker_starts") >= startsAtBackup + 2)
        #expect(harness.log("audit").contains { $0["command"] as? String == "restore" && $0["outcome"] as? String == "done" })

        let unknown = try SupervisorHarness.cli(["restore", "--backup", "nope", "--yes", "--config", harness.configPath])
        #expect(unknown.status == 1)
        #expect(unknown.stderr.contains("there is no backup nope"))
        #expect(try harness.status().worker.state == .ready)
        #expect(try harness.terminate() == 0)
    }

    @Test func whatACrashMidBackupLeftIsNeverABackupAndIsRemovedAtStart() throws {
        let (harness, backup) = try preparedHarness()
        let location = harness.dataDir + "/backups"
        // A supervisor killed mid-backup leaves its temporary files behind.
        for name in [".tmp-20261126T040000000Z-daily.sqlite", ".tmp-20261126T040000000Z-daily.json"] {
            FileManager.default.createFile(atPath: location + "/" + name, contents: Data("half".utf8))
        }
        try harness.startReady()
        let names = try FileManager.default.contentsOfDirectory(atPath: location)
        #expect(!names.contains { $0.hasPrefix(".tmp-") })
        let listed = try SupervisorHarness.cli(["backups", "--json", "--config", harness.configPath])
        #expect(listed.stdout.contains(backup))
        #expect(!listed.stdout.contains("20261126T040000000Z"))
        #expect(harness.log("supervisor").contains { $0["message"] as? String == "removed the leftover of an unfinished backup" })
        #expect(try harness.terminate() == 0)
    }

    @Test func verifyFindsADamagedBackupCopy() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        let status = try harness.waitForStatus(timeout: .seconds(20), "the first backup") { ($0.backups?.count ?? 0) >= 1 && $0.operation == nil }
        let id = try #require(status.backups?.last?.id)
        #expect(try SupervisorHarness.cli(["verify", "--config", harness.configPath]).status == 0)
        let copy = harness.dataDir + "/backups/\(id).sqlite"
        let fd = open(copy, O_WRONLY)
        _ = [UInt8](repeating: 0x5A, count: 64).withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 5000) }
        close(fd)
        let verify = try SupervisorHarness.cli(["verify", "--config", harness.configPath])
        #expect(verify.status == 1)
        #expect(verify.stdout.contains("FAILED \(id)"))
        #expect(verify.stdout.contains("ok     \(harness.dataDir)/bot.sqlite"))
        #expect(try harness.terminate() == 0)
    }

    @Test func migrationsWaitForAPreMigrationBackup() throws {
        let (harness, _) = try preparedHarness()
        // A worker with a pending migration: it asks for the backup, as bot-worker does.
        let fake = try harness.script("fake-worker", """
            exec python3 -c '
            import json, os, socket, sys, time
            s = socket.socket(socket.AF_UNIX); s.connect(os.environ["BOT_SUPERVISOR_SOCKET"])
            f = s.makefile("rw")
            def send(m): f.write(json.dumps(m) + "\\n"); f.flush()
            send({"type": "hello", "protocolVersion": 3, "pid": os.getpid(), "version": "test", "logSystems": []})
            json.loads(f.readline())
            send({"type": "backupRequest", "id": 1, "reason": "pre-migration", "migrations": ["v2-test"]})
            reply = json.loads(f.readline())
            while reply["type"] == "snapshotTaken": reply = json.loads(f.readline())
            open(sys.argv[1], "w").write(json.dumps(reply))
            send({"type": "ready"})
            s.settimeout(0.2)
            while True:
                send({"type": "heartbeat", "sequence": 1, "healthy": True})
                try:
                    if not s.recv(4096): break
                except socket.timeout: pass
            ' \(harness.dir)/reply.json
            """)
        try harness.rewriteConfig { $0.replacingOccurrences(of: "\"worker\":{", with: "\"worker\":{\"executable\":\"\(fake)\",") }
        try harness.startReady()
        let reply = try String(contentsOfFile: harness.dir + "/reply.json", encoding: .utf8)
        #expect(reply.contains("\"type\": \"backupReply\"") && reply.contains("\"id\": 1") && reply.contains("\"ok\": true"))
        let backups = try SupervisorHarness.cli(["backups", "--json", "--config", harness.configPath])
        #expect(backups.stdout.contains("\"reason\" : \"pre-migration\""))
        #expect(try harness.terminate() == 0)
    }

    // MARK: - Helpers

    func damageFile(_ path: String, _ damage: Damage, scratch: String) throws {
        switch damage {
        case .pageOverwrite:
            let size = DurableSize.of(path)
            var bytes = [UInt8](repeating: 0, count: size - 4096)
            for index in bytes.indices { bytes[index] = UInt8.random(in: 0...255) }
            let fd = open(path, O_WRONLY)
            _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 4096) }
            close(fd)
        case .truncation:
            truncate(path, off_t(DurableSize.of(path) / 2))
        case .zeroedHeader:
            let fd = open(path, O_WRONLY)
            _ = [UInt8](repeating: 0, count: 100).withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
            close(fd)
        case .deletion:
            for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
        case .staleWAL:
            // The -wal of another database, left beside the file as a hand-made restore would.
            let writer = try PythonScript.start("""
                import sqlite3, shutil, sys
                con = sqlite3.connect(sys.argv[1], isolation_level=None)
                con.execute("PRAGMA journal_mode=wal"); con.execute("PRAGMA wal_autocheckpoint=0")
                con.execute("CREATE TABLE other (x TEXT)")
                con.executemany("INSERT INTO other VALUES (?)", [("y" * 300,)] * 200)
                shutil.copy(sys.argv[1] + "-wal", sys.argv[2] + "-wal")
                print("done", flush=True)
                """, arguments: [scratch + "/other.sqlite", path])
            #expect(writer.readLine() == "done")
            unlink(path + "-shm")
        }
    }

    func countRows(_ path: String, _ table: String) throws -> Int {
        let script = try PythonScript.start("""
            import sqlite3, sys
            con = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
            print(con.execute("SELECT COUNT(*) FROM " + sys.argv[2]).fetchone()[0], flush=True)
            """, arguments: [path, table])
        return Int(script.readLine() ?? "") ?? -1
    }
}

enum DurableSize {
    static func of(_ path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : -1
    }
}
