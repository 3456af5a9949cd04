import Foundation
import Glibc
import IPC
import TestSupport
import Testing

/// The progress of `backup` (and `verify`) as a script sees it: stderr a pipe, so one plain line
/// per phase there, and the usual result on stdout.
@Suite(.serialized) struct ProgressTests {
    @Test func backupAndVerifyPrintTheirPhasesOnStderrWhenItIsAPipe() throws {
        let harness = try SupervisorHarness()
        // Each step of a backup takes 300 ms longer: the phases last long enough to be polled.
        try harness.start(environment: ["BOT_SUPERVISOR_FAULT": "slow-maintenance:300"])
        try harness.waitForStatus(timeout: .seconds(60), "the first backup") { ($0.backups?.count ?? 0) >= 1 && $0.operation == nil && $0.worker.state == .ready }

        let backup = try SupervisorHarness.cli(["backup", "--socket", harness.statusSocket])
        #expect(backup.status == 0, "\(backup.stderr)")
        #expect(backup.stdout.hasPrefix("backup "))
        let lines = backup.stderr.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("backup") && $0.hasSuffix(": copying…") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("backup") && $0.hasSuffix(": verifying…") }, "\(lines)")
        // One line per phase, and no terminal control characters in a pipe.
        #expect(Set(lines).count == lines.count)
        #expect(!backup.stderr.contains("\u{1B}"))

        // With --json and no terminal: the JSON document on stdout, nothing on stderr.
        let json = try SupervisorHarness.cli(["backup", "--json", "--socket", harness.statusSocket])
        #expect(json.status == 0)
        #expect(json.stderr.isEmpty, "\(json.stderr)")
        let report = try JSONDecoder().decode(JSONValue.self, from: Data(json.stdout.utf8))
        #expect(report["id"]?.stringValue != nil)

        let verify = try SupervisorHarness.cli(["verify", "--socket", harness.statusSocket])
        #expect(verify.status == 0, "\(verify.stderr)")
        #expect(verify.stdout.contains("ok "))
        // A small verification may end before the first poll: its lines, if any, are plain.
        #expect(!verify.stderr.contains("\u{1B}"))
        #expect(try harness.terminate() == 0)
    }
}
