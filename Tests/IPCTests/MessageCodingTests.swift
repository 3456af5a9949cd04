import Foundation
import IPC
import Testing

@Suite struct MessageCodingTests {
    @Test(arguments: [
        WorkerMessage.hello(.init(pid: 42, version: "1.2.3")),
        .ready,
        .heartbeat(.init(sequence: 7, healthy: false, detail: "gateway reconnecting", rssBytes: 1024)),
        .fatal(message: "Discord rejected the token (close code 4004)"),
        .migrationsPending(identifiers: ["v2-xp", "v3-rules"]),
        .corruption(detail: "SQLite error 11: database disk image is malformed"),
        .snapshotNeeded(reason: "post-migration"),
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
        .migrationBackup(ok: false, message: "disk full"),
        .snapshotTaken(sequence: 42),
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
