import Foundation
import Glibc
import IPC
import Logging
import Testing

@testable import Supervisor

/// A worker's lines are filed by the systems its hello announced.
@Suite struct WorkerOutputTests {
    let directory: String

    init() throws {
        var template = Array("/tmp/woXXXXXX".utf8CString)
        directory = String(cString: mkdtemp(&template)!)
    }

    func read(_ name: String) -> [String] {
        ((try? String(contentsOfFile: directory + "/" + name, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    @Test func anAnnouncedSystemHasItsOwnFileAndItsErrorsAreCounted() throws {
        let files = try LogFiles(directory: directory)
        let errors = ErrorTracker()
        let output = WorkerOutput(files: files, echo: false, fallback: Logger(label: "bot") { JSONLogHandler(system: $0, files: files, echo: false) }, errors: errors)
        output.systems.announce(["greeter"], pid: 10)
        let info = LogLine.render(level: "INFO", system: "greeter", message: "member greeted", fields: [:]).dropLast()
        let error = LogLine.render(level: "ERROR", system: "greeter", message: "greeting failed", fields: ["error": .string("403")]).dropLast()
        output.accept(String(info), stream: "stderr", pid: 10)
        output.accept(String(error), stream: "stderr", pid: 10)
        #expect(read("greeter.log").count == 2)
        #expect(read("errors.log").count == 1 && read("errors.log")[0].contains("greeting failed"))
        #expect(errors.count() == 1)
        // Another worker that did not announce it: its line is raw output in bot.log.
        output.accept(String(error), stream: "stderr", pid: 11)
        #expect(read("greeter.log").count == 2)
        #expect(read("bot.log").contains { $0.contains("greeting failed") && $0.contains(#""level":"WARNING""#) })
    }

    @Test func theCoreSystemsNeedNoAnnouncement() {
        let systems = WorkerLogSystems()
        #expect(systems.systems(of: 1) == LogLine.coreWorkerSystems)
        systems.announce(["xp"], pid: 1)
        #expect(systems.systems(of: 1).contains("xp") && systems.systems(of: 1).contains("database"))
        for pid in 2...Int32(WorkerLogSystems.remembered + 1) { systems.announce([], pid: pid) }
        #expect(!systems.systems(of: 1).contains("xp"))
    }

    @Test func aHelloOfAnotherVersionIsRefusedNamingBoth() throws {
        let old = Frame.line(#"{"type":"hello","protocolVersion":1,"pid":5,"version":"0.0.9"}"#)
        let refusal = try #require(WorkerLinkServer.versionRefusal(old))
        #expect(refusal.code == "protocol-version")
        #expect(refusal.message.contains("protocol \(WorkerProtocol.version)") && refusal.message.contains("protocol 1"))
        #expect(refusal.message.contains("supervisor") && refusal.message.contains("worker"))
        let current = Frame.line(String(try JSONLine.encode(WorkerMessage.hello(.init(pid: 5, version: "x"))).dropLast()))
        #expect(WorkerLinkServer.versionRefusal(current) == nil)
    }

    @Test func aHelloWithABadLogSystemIsRefusedSayingWhich() throws {
        let systems = WorkerLogSystems()
        #expect(systems.admit(.init(pid: 1, version: "x", logSystems: ["xp", "greeter"])) == nil)
        #expect(systems.systems(of: 1).contains("greeter"))
        let refusal = try #require(systems.admit(.init(pid: 2, version: "x", logSystems: ["xp", "errors", "Bad-Name"])))
        #expect(!systems.systems(of: 2).contains("xp"))
        #expect(refusal.code == "bad-log-system")
        #expect(refusal.message.contains("\"errors\"") && refusal.message.contains("\"Bad-Name\"") && !refusal.message.contains("\"xp\""))
    }

    @Test func aWorkerBackupReasonIsTheManifestsReason() {
        for reason in BackupReason.allCases {
            #expect(BackupManifest.Reason(reason).rawValue == reason.rawValue)
        }
    }
}
