import Foundation
import Glibc
import IPC
import TestSupport
import Testing

/// The outside heartbeat (`alerts.heartbeatURL`) on the real supervisor, against a recording HTTP
/// server on loopback.
@Suite(.serialized) struct HeartbeatURLTests {
    @Test func pingsAfterHealthRunsFailWithTheCriticalCheckAndNeverLogsTheURL() throws {
        let server = try PingRecorder()
        let secret = "hc-7d3f0c1e-secret-uuid"
        let url = "http://127.0.0.1:\(server.port)/ping/\(secret)"
        let harness = try SupervisorHarness(config: ["alerts": ["heartbeatURL": url], "health": ["intervalSeconds": 1]])
        try harness.startReady()

        // The health loop's runs ping the URL itself (GET) once nothing is critical.
        try waitUntil(timeout: .seconds(60), "two ok pings") {
            server.requests().filter { $0.method == "GET" && $0.path == "/ping/\(secret)" }.count >= 2
        }
        // `health` runs the checks too, and pings; its answer shows the last ping.
        let before = server.requests().count
        let health = try SupervisorHarness.cli(["health", "--json", "--socket", harness.statusSocket])
        #expect(health.stdout.contains("\"heartbeat\""))
        #expect(!health.stdout.contains(secret))
        try waitUntil(timeout: .seconds(20), "a ping after the health command") { server.requests().count > before }

        // A critical check: the backups vanish and a file takes their place (the supervisor's
        // own repair, a new backup there, fails). The next ping goes to /fail and names it.
        try harness.waitForStatus(timeout: .seconds(30), "the first backup") { ($0.backups?.count ?? 0) >= 1 && $0.operation == nil }
        try FileManager.default.removeItem(atPath: harness.dataDir + "/backups")
        FileManager.default.createFile(atPath: harness.dataDir + "/backups", contents: Data("not a directory".utf8))
        var failure: PingRecorder.Request?
        try waitUntil(timeout: .seconds(30), "a ping to /fail") {
            failure = server.requests().first { $0.path == "/ping/\(secret)/fail" }
            return failure != nil
        }
        #expect(failure?.method == "POST")
        #expect(failure?.body.contains("critical backups:") == true)
        #expect(failure?.body.hasPrefix("1 health check is critical: backups") == true || failure?.body.contains("backups") == true)
        #expect((failure?.body.utf8.count ?? 0) <= 10_000)

        // The URL is the credential: in no log file, no alert, not in the status.
        #expect(try harness.terminate() == 0)
        for file in try FileManager.default.contentsOfDirectory(atPath: harness.logsDir) {
            #expect(!(try String(contentsOfFile: harness.logsDir + "/" + file, encoding: .utf8)).contains(secret), "\(file)")
        }
        #expect(!harness.stderr.contains(secret))
    }

    @Test func aPingThatFailsIsAWarningWithoutTheURL() throws {
        // Nothing listens on this port: every ping fails.
        let port = try freePort()
        let secret = "hc-0a9b8c7d-unreachable-secret"
        let harness = try SupervisorHarness(config: ["alerts": ["heartbeatURL": "http://127.0.0.1:\(port)/\(secret)"], "health": ["intervalSeconds": 1]])
        try harness.startReady()
        try waitUntil(timeout: .seconds(60), "the failed ping in supervisor.log") {
            harness.log("supervisor").contains { ($0["message"] as? String) == "the outside heartbeat could not be pinged" }
        }
        let snapshot = try harness.waitForStatus(timeout: .seconds(30), "the heartbeat check warning") { snapshot in
            snapshot.health?.checks.contains { $0.name == "heartbeat" && $0.status == .warn } == true
        }
        let shown = (snapshot.health?.checks ?? []).map { "\($0.name): \($0.detail)" }.joined(separator: "\n")
        #expect(!shown.contains(secret), "\(shown)")
        #expect(try harness.terminate() == 0)
        let line = harness.log("supervisor").first { ($0["message"] as? String) == "the outside heartbeat could not be pinged" }
        #expect(line?["level"] as? String == "WARNING")
        #expect(line?["target"] as? String == "alerts.heartbeatURL")
        for file in try FileManager.default.contentsOfDirectory(atPath: harness.logsDir) {
            #expect(!(try String(contentsOfFile: harness.logsDir + "/" + file, encoding: .utf8)).contains(secret), "\(file)")
        }
    }
}

/// A tiny HTTP server (Python's http.server) that answers 200 to every request and appends each
/// to a file as one JSON line: method, path, body.
final class PingRecorder {
    struct Request: Decodable {
        var method: String
        var path: String
        var body: String
    }

    let port: Int
    private let script: PythonScript
    private let file: String
    private let dir: String

    init() throws {
        dir = try makeTemporaryDirectory("ping")
        file = dir + "/requests.jsonl"
        script = try PythonScript.start("""
            import http.server, json, sys
            path = sys.argv[1]
            class Recorder(http.server.BaseHTTPRequestHandler):
                def record(self):
                    length = int(self.headers.get('Content-Length') or 0)
                    body = self.rfile.read(length).decode('utf-8', 'replace') if length else ''
                    with open(path, 'a') as f:
                        f.write(json.dumps({'method': self.command, 'path': self.path, 'body': body}) + '\\n')
                    self.send_response(200)
                    self.send_header('Content-Length', '2')
                    self.end_headers()
                    if self.command != 'HEAD':
                        self.wfile.write(b'OK')
                do_GET = do_POST = do_HEAD = record
                def log_message(self, *args):
                    pass
            server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Recorder)
            print(server.server_address[1], flush=True)
            server.serve_forever()
            """, arguments: [file])
        guard let line = script.readLine(), let port = Int(line) else { throw TestFailure(description: "the ping recorder did not start") }
        self.port = port
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    /// Every request so far, oldest first.
    func requests() -> [Request] {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(Request.self, from: Data($0.utf8)) }
    }
}
