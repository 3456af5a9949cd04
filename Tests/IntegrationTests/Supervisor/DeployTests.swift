import Foundation
import Glibc
import IPC
import TestSupport
import Testing

/// Deploy and rollback on real binaries: releases are directories of links to the built binaries
/// (or scripts standing in for a broken worker) under a deploy root of the test's own.
@Suite(.serialized) struct DeployTests {
    struct Installation {
        let harness: SupervisorHarness
        let root: String

        init(probationSeconds: Double = 2, readyTimeoutSeconds: Double = 8) throws {
            var template = Array("/tmp/bdXXXXXX".utf8CString)
            root = String(cString: mkdtemp(&template)!)
            try Self.release(at: root + "/releases/v1", version: "v1")
            try FileManager.default.createSymbolicLink(atPath: root + "/current", withDestinationPath: root + "/releases/v1")
            harness = try SupervisorHarness(config: [
                "deploy": ["root": root, "probationSeconds": probationSeconds, "readyTimeoutSeconds": readyTimeoutSeconds, "rehearsalSeconds": 1],
            ])
        }

        /// A release of the binaries under test; `worker` replaces bot-worker by a script.
        static func release(at path: String, version: String, worker: String? = nil) throws {
            try FileManager.default.createDirectory(atPath: path + "/bin", withIntermediateDirectories: true)
            for binary in ["bot-supervisor", "bot-worker", "discord-sandbox"] {
                if binary == "bot-worker", let worker {
                    try worker.write(toFile: path + "/bin/bot-worker", atomically: true, encoding: .utf8)
                    chmod(path + "/bin/bot-worker", 0o755)
                } else {
                    try FileManager.default.createSymbolicLink(atPath: path + "/bin/" + binary, withDestinationPath: SupervisorHarness.binDir + "/" + binary)
                }
            }
            try version.write(toFile: path + "/VERSION", atomically: true, encoding: .utf8)
        }

        var current: String { (try? FileManager.default.destinationOfSymbolicLink(atPath: root + "/current")) ?? "" }

        func deploy(_ release: String) throws -> (status: Int32, stdout: String, stderr: String) {
            try SupervisorHarness.cli(["deploy", release, "--socket", harness.statusSocket])
        }

        func deployState() -> JSONValue? {
            guard let data = FileManager.default.contents(atPath: harness.dataDir + "/deploy.json") else { return nil }
            return try? JSONDecoder().decode(JSONValue.self, from: data)
        }
    }

    /// A worker that passes every check before the switch (its migrations, the staging
    /// rehearsal) and crashes at every start in production: what the probation is for.
    static var crashingWorker: String {
        """
        #!/bin/sh
        case "$BOT_SUPERVISOR_SOCKET" in */rehearsal/*) exec \(SupervisorHarness.binDir)/bot-worker "$@";; esac
        if [ "$1" = migrate ]; then exec \(SupervisorHarness.binDir)/bot-worker "$@"; fi
        echo "this release is broken" >&2
        exit 1
        """
    }

    /// The real worker with a fault injected (`BOT_WORKER_FAULT`).
    static func faultyWorker(_ fault: String) -> String {
        """
        #!/bin/sh
        if [ "$1" = migrate ]; then exec \(SupervisorHarness.binDir)/bot-worker "$@"; fi
        BOT_WORKER_FAULT=\(fault) exec \(SupervisorHarness.binDir)/bot-worker "$@"
        """
    }

    @Test func aGoodReleaseIsSwitchedToAndKeptAfterItsProbation() throws {
        let install = try Installation()
        try install.harness.startReady()
        let before = try #require(try install.harness.status().worker.pid)
        // A release outside the deploy root is copied into releases/.
        let incoming = install.root + "/incoming/v2"
        try Installation.release(at: incoming, version: "v2")
        let result = try install.deploy(incoming)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("rehearsal passed; deployed v2: worker pid"))
        #expect(install.current == install.root + "/releases/v2")
        let after = try install.harness.waitForStatus(timeout: .seconds(20), "the worker on v2") { $0.worker.state == .ready && $0.worker.pid != before }
        #expect(after.worker.pid != before)
        try waitUntil(timeout: .seconds(20), "the probation passed") { install.deployState()?["phase"]?.stringValue == "done" }
        #expect(try install.harness.status().alerts.contains { $0.message.contains("deploy of v2 passed its probation") })
        // The steps are in audit.log.
        let steps = install.harness.log("audit").compactMap { $0["message"] as? String }.filter { $0.hasPrefix("deploy:") }
        #expect(steps.contains("deploy: pre-deploy backup taken") && steps.contains("deploy: current switched"))
        #expect(try install.harness.terminate() == 0)
    }

    @Test func aReleaseThatCrashesIsRolledBackByItself() throws {
        let install = try Installation()
        try install.harness.startReady()
        try Installation.release(at: install.root + "/releases/broken", version: "broken", worker: Self.crashingWorker)
        let result = try install.deploy(install.root + "/releases/broken")
        #expect(result.status == 1)
        #expect(result.stderr.contains("rolled back to v1"), "\(result.stderr)")
        #expect(install.current == install.root + "/releases/v1")
        let status = try install.harness.waitForStatus(timeout: .seconds(30), "the old release ready again") { $0.worker.state == .ready }
        #expect(status.alerts.contains { $0.severity == .critical && $0.message.hasPrefix("deploy of broken rolled back to v1") })
        #expect(install.deployState()?["phase"]?.stringValue == "rolled-back")
        #expect(try install.harness.terminate() == 0)
    }

    @Test func aReleaseWhoseMigrationsFailIsRefusedAndNothingChanges() throws {
        let install = try Installation()
        try install.harness.startReady()
        let pid = try #require(try install.harness.status().worker.pid)
        try Installation.release(at: install.root + "/releases/bad-migration", version: "bad-migration", worker: """
            #!/bin/sh
            if [ "$1" = migrate ] && [ "$2" = --help ]; then exit 0; fi
            echo '{"ok":false,"problems":["migration v9 failed: no such column"]}'
            exit 1
            """)
        let result = try install.deploy(install.root + "/releases/bad-migration")
        #expect(result.status == 1)
        #expect(result.stderr.contains("migrations fail on a copy of the database") && result.stderr.contains("Nothing was changed"))
        #expect(install.current == install.root + "/releases/v1")
        #expect(try install.harness.status().worker.pid == pid)
        #expect(try install.harness.terminate() == 0)
    }

    @Test func rollbackOnRequestGoesBackToThePreviousRelease() throws {
        let install = try Installation(probationSeconds: 1)
        try install.harness.startReady()
        try Installation.release(at: install.root + "/releases/v2", version: "v2")
        #expect(try install.deploy(install.root + "/releases/v2").status == 0)
        try waitUntil(timeout: .seconds(20), "the probation passed") { install.deployState()?["phase"]?.stringValue == "done" }
        let back = try SupervisorHarness.cli(["rollback", "--socket", install.harness.statusSocket])
        #expect(back.status == 0, "\(back.stderr)")
        #expect(back.stdout.contains("rolled back to v1"))
        #expect(install.current == install.root + "/releases/v1")
        try install.harness.waitForStatus(timeout: .seconds(20), "ready on v1") { $0.worker.state == .ready }
        #expect(try install.harness.terminate() == 0)
    }

    @Test func deployWithoutAnInstalledReleaseSaysWhatToDo() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        let result = try SupervisorHarness.cli(["deploy", "/nonexistent", "--socket", harness.statusSocket])
        #expect(result.status == 1)
        #expect(result.stderr.contains("install with deploy/install.sh"))
        #expect(try harness.terminate() == 0)
    }

    // MARK: - The staging rehearsal (issue 10)

    func expectRefused(_ install: Installation, _ release: String, worker: String, cause: String) throws {
        let pid = try #require(try install.harness.status().worker.pid)
        let live = install.harness.dataDir + "/bot.sqlite"
        let before = try FileManager.default.attributesOfItem(atPath: live)
        try Installation.release(at: install.root + "/releases/" + release, version: release, worker: worker)
        let result = try install.deploy(install.root + "/releases/" + release)
        #expect(result.status == 1)
        #expect(result.stderr.contains("rehearsal of \(release): FAILED"), "\(result.stderr)")
        #expect(result.stderr.contains(cause), "\(result.stderr)")
        #expect(result.stderr.contains("nothing was changed"))
        // Production untouched: the same worker, the same release.
        #expect(install.current == install.root + "/releases/v1")
        #expect(try install.harness.status().worker.pid == pid)
        let after = try FileManager.default.attributesOfItem(atPath: live)
        #expect(after[.modificationDate] as? Date == before[.modificationDate] as? Date)
        #expect(after[.systemFileNumber] as? Int == before[.systemFileNumber] as? Int)
    }

    @Test func aReleaseThatCrashesAtStartIsRefusedByTheRehearsal() throws {
        let install = try Installation()
        try install.harness.startReady()
        try expectRefused(install, "crashes", worker: """
            #!/bin/sh
            if [ "$1" = migrate ]; then exec \(SupervisorHarness.binDir)/bot-worker "$@"; fi
            exit 1
            """, cause: "the worker is")
        #expect(try install.harness.terminate() == 0)
    }

    @Test func aReleaseThatFailsAHealthCheckIsRefusedByTheRehearsal() throws {
        let install = try Installation()
        try install.harness.startReady()
        try expectRefused(install, "noisy", worker: Self.faultyWorker("error-burst"), cause: "health check errors is critical")
        #expect(try install.harness.terminate() == 0)
    }

    @Test func aReleaseWhoseCommandsThrowIsRefusedByTheRehearsal() throws {
        let install = try Installation()
        try install.harness.startReady()
        try expectRefused(install, "throwing", worker: Self.faultyWorker("command-throws"), cause: "failed: Something went wrong")
        #expect(try install.harness.terminate() == 0)
    }

    @Test func rehearseOnlyPrintsTheReportAndChangesNothing() throws {
        let install = try Installation()
        try install.harness.startReady()
        let pid = try install.harness.status().worker.pid
        try Installation.release(at: install.root + "/releases/v2", version: "v2")
        let result = try SupervisorHarness.cli(["deploy", "--rehearse-only", install.root + "/releases/v2", "--socket", install.harness.statusSocket])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("rehearsal of v2: passed"))
        #expect(result.stdout.contains("slash commands answered") && result.stdout.contains("3 Verify presses"))
        #expect(install.current == install.root + "/releases/v1")
        #expect(try install.harness.status().worker.pid == pid)
        // Nothing of the rehearsal is left behind; its report is in production's audit.log.
        #expect(!FileManager.default.fileExists(atPath: install.harness.dataDir + "/rehearsal"))
        #expect(install.harness.log("audit").contains { $0["message"] as? String == "deploy: rehearsal passed" })
        #expect(try install.harness.terminate() == 0)
    }

    @Test func installCheckStopsBeforeAnythingWhenTheSuiteFails() throws {
        guard getuid() == 0, !FileManager.default.fileExists(atPath: "/opt/bot") else { return }  // install.sh is root's, and never over a real install
        var template = Array("/tmp/icXXXXXX".utf8CString)
        let fake = String(cString: mkdtemp(&template)!)
        // A `make` whose check-release fails, as a broken test suite would.
        try "#!/bin/sh\ncase \"$*\" in *check-release*) echo 'test failed: 1 issue' ; exit 2;; esac\nexit 0\n".write(toFile: fake + "/make", atomically: true, encoding: .utf8)
        chmod(fake + "/make", 0o755)
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: repo + "/deploy/install.sh")
        process.arguments = ["--check"]
        process.environment = ProcessInfo.processInfo.environment.merging(["PATH": fake + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")]) { $1 }
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        let said = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 1)
        #expect(said.contains("the test suite failed: nothing was installed"))
        #expect(!FileManager.default.fileExists(atPath: "/opt/bot"))
        #expect(!FileManager.default.fileExists(atPath: "/etc/systemd/system/bot-supervisor.service"))
    }
}
