import Foundation
import Glibc
import IPC
import TestSupport
import Testing

/// Operators, scripts and strangers on the sockets: bad input, permissions, exit statuses.
@Suite(.serialized) struct ControlSocketTests {
    @Test func garbageOnTheStatusSocketGetsAnErrorAndTheSupervisorKeepsServing() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()

        let cases: [(bytes: [UInt8], code: String)] = [
            (Array("this is not json\n".utf8), "bad-request"),
            (Array("{\"cmd\":\"format-disk\"}\n".utf8), "bad-request"),
            ([0x7b, 0xff, 0xfe, 0x7d, 0x0a], "invalid-utf8"),
            ([UInt8](repeating: UInt8(ascii: "a"), count: (1 << 20) + 10), "line-too-long"),
            (Array("{\"cmd\":\"sta".utf8), "read-timeout"),
        ]
        for (bytes, code) in cases {
            let socket = try RawSocket(path: harness.statusSocket)
            socket.send(bytes)
            let reply = try #require(socket.readLine(timeout: .seconds(5)), "no reply for \(code)")
            let response = try JSONLine.decode(ControlResponse<Ignored>.self, from: reply)
            #expect(response.ok == false)
            #expect(response.error?.code == code, "\(reply)")
            #expect(socket.isClosedByPeer(timeout: .seconds(5)), "connection left open after \(code)")
        }
        #expect(try harness.status().worker.state == .ready)
        #expect(try harness.terminate() == 0)
    }

    @Test func oneConnectionServesManyRequests() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        let socket = try RawSocket(path: harness.statusSocket)
        for _ in 0..<3 {
            socket.send("{\"cmd\":\"status\"}\n")
            let reply = try #require(socket.readLine(timeout: .seconds(5)))
            #expect(try JSONLine.decode(ControlResponse<StatusSnapshot>.self, from: reply).ok)
        }
        #expect(try harness.terminate() == 0)
    }

    @Test func garbageOnTheWorkerSocketGetsAnErrorAndTheWorkerKeepsRunning() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        let worker = try harness.status().worker.pid

        let cases: [([UInt8], String)] = [
            (Array("garbage\n".utf8), "bad-request"),
            (Array("{\"type\":\"teleport\"}\n".utf8), "bad-request"),
            (Array(try JSONLine.encode(WorkerMessage.hello(.init(pid: getpid(), version: "x"))).utf8), "unknown-worker"),
            (Array(try JSONLine.encode(WorkerMessage.hello(.init(protocolVersion: 99, pid: getpid(), version: "x"))).utf8), "protocol-version"),
            ([UInt8](repeating: UInt8(ascii: "{"), count: (1 << 20) + 10), "line-too-long"),
            ([0x7b, 0xc3, 0x28, 0x7d, 0x0a], "invalid-utf8"),
            // Half a hello, then silence: cut off after the worker socket's read timeout.
            (Array("{\"type\":\"hel".utf8), "read-timeout"),
        ]
        for (line, code) in cases {
            let socket = try RawSocket(path: harness.workerSocket)
            socket.send(line)
            let reply = try #require(socket.readLine(timeout: .seconds(5)), "no reply for \(code)")
            #expect(try JSONLine.decode(SupervisorMessage.self, from: reply) == .error(ErrorBody(code: code, message: try errorMessage(reply))))
            #expect(socket.isClosedByPeer(timeout: .seconds(5)))
        }
        let status = try harness.status()
        #expect(status.worker.state == .ready && status.worker.pid == worker && status.worker.restarts == 0)
        #expect(try harness.terminate() == 0)
    }

    private func errorMessage(_ line: String) throws -> String {
        guard case .error(let body) = try JSONLine.decode(SupervisorMessage.self, from: line) else { return "" }
        return body.message
    }

    @Test func anotherUserMayReadStatusButNotRestartTheWorker() throws {
        try #require(getuid() == 0, "needs root to run the client as nobody")
        let harness = try SupervisorHarness()
        try harness.startReady()
        // Stand in for an operators group: let everyone reach the socket, so SO_PEERCRED decides.
        chmod(harness.dataDir, 0o755)
        chmod(harness.dataDir + "/run", 0o755)
        chmod(harness.statusSocket, 0o666)
        let binary = harness.dir + "/bot-supervisor"
        try FileManager.default.copyItem(atPath: SupervisorHarness.supervisorBinary, toPath: binary)
        let asNobody = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

        let status = try SupervisorHarness.cli(["status", "--json", "--socket", harness.statusSocket], prefix: asNobody, binary: binary)
        #expect(status.status == 0, "\(status.stderr)")
        let old = try harness.status().worker.pid

        let restart = try SupervisorHarness.cli(["restart-worker", "--socket", harness.statusSocket], prefix: asNobody, binary: binary)
        #expect(restart.status == 1)
        #expect(restart.stderr.contains("permission-denied"))
        #expect(try harness.status().worker.pid == old)
        #expect(harness.log("audit").contains { $0["outcome"] as? String == "refused" && $0["uid"] as? String == "65534" })
        #expect(try harness.terminate() == 0)
    }

    @Test func socketsAndTheirDirectoryHaveTheContractsModes() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        func mode(_ path: String) throws -> Int {
            (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? -1
        }
        #expect(try mode(harness.dataDir + "/run") == 0o750)
        #expect(try mode(harness.statusSocket) == 0o660)
        #expect(try mode(harness.workerSocket) == 0o600)
        #expect(try harness.terminate() == 0)
    }

    @Test func aSecondSupervisorOnTheSameDataDirIsRefused() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        let second = try SupervisorHarness.cli(["run", "--config", harness.configPath])
        #expect(second.status == 1)
        #expect(second.stderr.contains("already running"))
        #expect(try harness.status().worker.state == .ready)
        #expect(try harness.terminate() == 0)
    }

    @Test func exitStatusesFollowTheContract() throws {
        let harness = try SupervisorHarness()
        let unreachable = try SupervisorHarness.cli(["status", "--socket", harness.dir + "/nothing.sock"])
        #expect(unreachable.status == 3)
        #expect(unreachable.stderr.contains("cannot reach the supervisor"))

        let badConfig = harness.dir + "/bad.json"
        try #"{"worker": {"heartbeatTimeoutSeconds": "soon"}}"#.write(toFile: badConfig, atomically: true, encoding: .utf8)
        let bad = try SupervisorHarness.cli(["run", "--config", badConfig])
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("worker.heartbeatTimeoutSeconds"))

        let usage = try SupervisorHarness.cli(["status", "--no-such-flag"])
        #expect(usage.status == 2)
    }

    @Test func statusPrintsATableAndJSON() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        let table = try SupervisorHarness.cli(["status", "--socket", harness.statusSocket])
        #expect(table.status == 0)
        #expect(table.stdout.contains("worker") && table.stdout.contains("ready"))
        let json = try SupervisorHarness.cli(["status", "--json", "--config", harness.configPath])
        #expect(json.status == 0, "\(json.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect((object?["worker"] as? [String: Any])?["state"] as? String == "ready")
        #expect(try harness.terminate() == 0)
    }
}
