import Foundation
import IPC
import Testing

@Suite struct MessageCodingTests {
    @Test(arguments: [
        WorkerMessage.hello(.init(pid: 42, version: "1.2.3", logSystems: ["xp", "greeter"])),
        .ready,
        .heartbeat(.init(sequence: 7, healthy: false, detail: "gateway reconnecting", rssBytes: 1024)),
        .fatal(message: "Discord rejected the token (close code 4004)"),
        .backupRequest(.init(id: RequestID(1), reason: .preMigration, migrations: ["v2-xp", "v3-rules"])),
        .corruption(detail: "SQLite error 11: database disk image is malformed"),
        .alert(severity: .warning, message: "role rules looped for member 7 in guild 1: #3 (+@Regular) → #4 (−@Member) → …; stopped at depth 10"),
        .backupRequest(.init(id: RequestID(2), reason: .postMigration)),
        .xpTransferReply(.init(id: RequestID(4), result: XPTransferResult(guild: "1", summary: "2 members in the file: 1 added, 1 updated, 0 unchanged. Dry run: nothing was written.", dryRun: true, entries: 2, added: 1, updated: 1))),
        .xpTransferReply(.init(id: RequestID(5), result: XPTransferResult(guild: "1", summary: "1 member exported", entries: 1, csv: "user_id,xp,level,messages,voice_minutes\n5,100,1,0,0\n"))),
        .xpTransferReply(.init(id: RequestID(6), error: ErrorBody(code: "malformed", message: "line 17: field \"xp\": \"12a\" is not a whole number ≥ 0; nothing was imported"))),
        .backupRequest(.init(id: RequestID(3), reason: .journal, detail: "the journal in /b takes writes again")),
        .heartbeat(.init(sequence: 8, journal: JournalReport(enabled: true, timeline: "t", sequence: 9, lastCommitAt: nil, unjournaled: 0, locations: [
            .init(path: "/b", state: "failed", lastSequence: 7, lag: 2, sizeBytes: 100, segments: 1, error: "write: No space left on device"),
        ]))),
    ])
    func workerMessagesRoundTrip(_ message: WorkerMessage) throws {
        let line = try JSONLine.encode(message)
        #expect(line.hasSuffix("\n"))
        #expect(line.dropLast().contains("\n") == false)
        #expect(try JSONLine.decode(WorkerMessage.self, from: line) == message)
    }

    @Test(arguments: [
        SupervisorMessage.welcome(.init(heartbeatIntervalMs: 5000, databasePath: "/var/lib/bot/bot.sqlite", discord: DiscordSettings(mode: .discord, token: Secret("t0ken"), guildIDs: ["1"]), journal: JournalSettings(enabled: true, locations: ["/b1", "/b2"], segmentMaxBytes: 1 << 20))),
        .backupReply(.init(id: RequestID(7), ok: false, message: "disk full")),
        .snapshotTaken(sequence: 42),
        .xpTransfer(.init(id: RequestID(3), action: .import, guild: "1187654321098765432", format: "mee6", dryRun: true, content: "eyJwbGF5ZXJzIjpbXX0=")),
        .xpTransfer(.init(id: RequestID(4), action: .export, guild: "1187654321098765432")),
        .shutdown(reason: "restart requested\nby operator"),
        .error(ErrorBody(code: "bad-request", message: "not JSON")),
    ])
    func supervisorMessagesRoundTrip(_ message: SupervisorMessage) throws {
        let line = try JSONLine.encode(message)
        #expect(line.dropLast().contains("\n") == false)
        #expect(try JSONLine.decode(SupervisorMessage.self, from: line) == message)
    }

    @Test func helloCarriesTheProtocolVersion() throws {
        let line = try JSONLine.encode(WorkerMessage.hello(.init(pid: 1, version: "x")))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["type"] as? String == "hello")
        #expect(object["protocolVersion"] as? Int == WorkerProtocol.version)
    }

    @Test func aBackupRequestCarriesItsIDAndAnEnumReason() throws {
        let line = try JSONLine.encode(WorkerMessage.backupRequest(.init(id: RequestID(3), reason: .postMigration)))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["type"] as? String == "backupRequest")
        #expect(object["id"] as? Int == 3)
        #expect(object["reason"] as? String == "post-migration")
        let reply = try JSONLine.decode(SupervisorMessage.self, from: #"{"type":"backupReply","id":3,"ok":true,"message":"backup b taken"}"#)
        #expect(reply == .backupReply(.init(id: RequestID(3), ok: true, message: "backup b taken")))
    }

    @Test func aReasonOutsideTheEnumIsRefused() {
        #expect(throws: (any Error).self) {
            try JSONLine.decode(WorkerMessage.self, from: #"{"type":"backupRequest","id":1,"reason":"because"}"#)
        }
        #expect(Set(BackupReason.allCases.map(\.rawValue)) == ["pre-migration", "post-migration", "journal"])
    }

    @Test func theVersionProbeReadsAHelloOfAnyVersion() throws {
        // A version-1 hello (no logSystems) still yields its version, for the refusal.
        let probe = try JSONLine.decode(WorkerProtocol.VersionProbe.self, from: #"{"type":"hello","protocolVersion":1,"pid":5,"version":"0.0.9"}"#)
        #expect(probe.protocolVersion == 1 && probe.type == "hello")
        #expect(WorkerProtocol.version == 3)
    }

    @Test func versionRefusalNamesBothVersions() {
        let text = WorkerProtocol.versionMismatch(own: "supervisor", peer: "worker", peerVersion: 7)
        #expect(text.contains("protocol \(WorkerProtocol.version)") && text.contains("protocol 7"))
        #expect(text.contains("supervisor") && text.contains("worker"))
    }

    @Test func announcedLogSystemsAreChecked() {
        #expect(LogLine.validate(announced: ["xp", "role_connections", "a", "greeter2"]).isEmpty)
        let bad = LogLine.validate(announced: ["Xp", "../etc", "errors", "supervisor", "audit", "bot", "", String(repeating: "a", count: 33), "x-y"])
        #expect(bad.map(\.name) == ["Xp", "../etc", "errors", "supervisor", "audit", "bot", "", String(repeating: "a", count: 33), "x-y"])
        #expect(bad.first { $0.name == "errors" }?.description.contains("reserved") == true)
        #expect(LogLine.validate(announced: [String(repeating: "a", count: 32)]).isEmpty)
    }

    @Test func aLineIsParsedOnlyForTheSystemsGiven() {
        let line = LogLine.render(level: "ERROR", system: "greeter", message: "boom", fields: ["error": .string("x")]).dropLast()
        #expect(LogLine.parse(String(line), systems: LogLine.coreWorkerSystems) == nil)
        #expect(LogLine.parse(String(line), systems: LogLine.coreWorkerSystems.union(["greeter"]))?.system == "greeter")
    }

    @Test func unknownMessageTypeIsExplained() {
        #expect {
            try JSONLine.decode(WorkerMessage.self, from: #"{"type":"teleport"}"#)
        } throws: { error in
            JSONLine.explain(error).contains("unknown message type \"teleport\"")
        }
    }

    @Test func notJSONIsExplained() {
        #expect {
            try JSONLine.decode(ControlRequest.self, from: "hello there")
        } throws: { error in
            JSONLine.explain(error) == "not valid JSON"
        }
    }

    @Test func controlRequestsAreThePlainCmdLines() throws {
        #expect(try JSONLine.decode(ControlRequest.self, from: #"{"cmd":"status"}"#) == ControlRequest(cmd: .status))
        #expect(try JSONLine.decode(ControlRequest.self, from: #"{"cmd":"restart-worker"}"#).cmd == .restartWorker)
        #expect(try JSONLine.decode(ControlRequest.self, from: #"{"cmd":"restore","backup":"b1"}"#).backup == "b1")
        let xpImport = ControlRequest(cmd: .xpImport, guild: "1", format: "csv", dryRun: true, content: "dXNlcl9pZCx4cAo=")
        #expect(try JSONLine.decode(ControlRequest.self, from: try JSONLine.encode(xpImport)) == xpImport)
        #expect(try JSONLine.decode(ControlRequest.self, from: #"{"cmd":"xp-export","guild":"1"}"#) == ControlRequest(cmd: .xpExport, guild: "1"))
        #expect {
            try JSONLine.decode(ControlRequest.self, from: #"{"cmd":"format-disk"}"#)
        } throws: { error in
            JSONLine.explain(error).contains("unknown command \"format-disk\"")
        }
    }

    @Test func onlyReadingCommandsAreReadOnly() {
        let readOnly = ControlCommand.allCases.filter(\.isReadOnly).map(\.rawValue).sorted()
        #expect(readOnly == ["backups", "health", "status"])
    }

    @Test func snapshotHasEveryFieldWithNullForUnknownValues() throws {
        let snapshot = StatusSnapshot(
            supervisor: SupervisorStatus(pid: 1, version: "v", startedAt: "2026-01-01T00:00:00.000Z", state: "running", rssBytes: nil),
            worker: WorkerStatus(state: .starting)
        )
        let line = try JSONLine.encode(ControlResponse.success(snapshot))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["ok"] as? Bool == true)
        let result = try #require(object["result"] as? [String: Any])
        for key in ["supervisor", "worker", "database", "backups", "health", "alerts"] {
            #expect(result.keys.contains(key), "missing \(key)")
        }
        #expect(result["database"] is NSNull)
        let worker = try #require(result["worker"] as? [String: Any])
        for key in ["pid", "state", "restarts", "startedAt", "lastHeartbeatAgeMs", "lastExit"] {
            #expect(worker.keys.contains(key), "missing worker.\(key)")
        }
        #expect(worker["lastExit"] is NSNull)
        #expect(try JSONLine.decode(ControlResponse<StatusSnapshot>.self, from: line).result == snapshot)
    }

    @Test func failureResponsesCarryCodeAndMessage() throws {
        let line = try JSONLine.encode(ControlResponse<Ignored>.failure(ErrorBody(code: "permission-denied", message: "no")))
        #expect(line == #"{"error":{"code":"permission-denied","message":"no"},"ok":false}"# + "\n")
    }
}
