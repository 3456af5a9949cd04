import AsyncHTTPClient
import Foundation
import Glibc
import IPC
import TestSupport
import Testing

/// The health loop, alerts and metrics on the real binaries.
@Suite(.serialized) struct HealthTests {
    func health(_ harness: SupervisorHarness) throws -> (status: Int32, result: JSONValue) {
        let run = try SupervisorHarness.cli(["health", "--json", "--socket", harness.statusSocket])
        let value = try JSONDecoder().decode(JSONValue.self, from: Data((run.stdout.isEmpty ? "null" : run.stdout).utf8))
        return (run.status, value)
    }

    func checks(_ result: JSONValue) -> [String: String] {
        Dictionary(uniqueKeysWithValues: (result["checks"]?.arrayValue ?? []).compactMap { check in
            check["name"]?.stringValue.flatMap { name in check["status"]?.stringValue.map { (name, $0) } }
        })
    }

    @Test func healthRunsEveryCheckOnDemandAndTheSnapshotKeepsIt() throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        try harness.waitForStatus(timeout: .seconds(20), "the first backup") { ($0.backups?.count ?? 0) >= 1 && $0.operation == nil }
        let (status, result) = try health(harness)
        #expect(status == 0)
        #expect(result["status"]?.stringValue == "ok")
        #expect(Set(checks(result).keys) == ["database", "worker", "discord-limits", "memory", "backups", "disk-data", "disk-backups", "errors", "commands", "sessions"])
        let snapshot = try harness.status()
        #expect(snapshot.health?.status == .ok)
        #expect(snapshot.health?.checks.count == 10)
        let human = try SupervisorHarness.cli(["health", "--socket", harness.statusSocket])
        #expect(human.stdout.hasPrefix("health ok at "))
        #expect(try harness.terminate() == 0)
    }

    @Test func aCheckThatChangesStateAlertsOnceAndRecoversThroughTheWebhook() async throws {
        let discord = try SandboxServer(arguments: [])
        let webhook = discord.apiBaseURL + "/webhooks/5550001/webhook-token-abcdef"
        let harness = try SupervisorHarness(config: ["alerts": ["webhookURL": webhook]])
        try harness.startReady()
        try harness.waitForStatus(timeout: .seconds(20), "the first backup") { ($0.backups?.count ?? 0) >= 1 && $0.operation == nil }
        #expect(try health(harness).status == 0)

        // The backups vanish, and a file takes the location's place so that the supervisor's own
        // repair (a new backup there) fails: critical, exit 1, one alert however often the check runs.
        try FileManager.default.removeItem(atPath: harness.dataDir + "/backups")
        FileManager.default.createFile(atPath: harness.dataDir + "/backups", contents: Data("not a directory".utf8))
        let failing = try health(harness)
        #expect(failing.status == 1)
        #expect(checks(failing.result)["backups"] == "critical")
        #expect(try health(harness).status == 1)
        // The location back, and a new backup: the check recovers.
        try FileManager.default.removeItem(atPath: harness.dataDir + "/backups")
        #expect(try SupervisorHarness.cli(["backup", "--socket", harness.statusSocket]).status == 0)
        let recovered = try health(harness)
        #expect(checks(recovered.result)["backups"] == "ok")

        let alerts = try harness.status().alerts.map(\.message)
        #expect(alerts.filter { $0.hasPrefix("health check backups is critical") }.count == 1)
        #expect(alerts.filter { $0.hasPrefix("health check backups recovered") }.count == 1)
        var delivered: [String] = []
        try await waitUntilAsync(timeout: .seconds(20), "the critical alert and the recovery at the webhook") {
            delivered = ((try? await discord.control.get("/sandbox/state"))?["webhookMessages"]?.arrayValue ?? []).compactMap { $0["content"]?.stringValue }
            return delivered.contains { $0.contains("recovered") && $0.contains("backups") }
        }
        #expect(delivered.filter { $0.contains("CRITICAL") && $0.contains("health check backups is critical") }.count == 1)
        // The webhook's token is in no log.
        for file in try FileManager.default.contentsOfDirectory(atPath: harness.logsDir) {
            #expect(!(try String(contentsOfFile: harness.logsDir + "/" + file, encoding: .utf8)).contains("webhook-token-abcdef"), "\(file)")
        }
        #expect(try harness.terminate() == 0)
    }

    @Test func metricsAreServedAsPrometheusText() async throws {
        let port = try freePort()
        let harness = try SupervisorHarness(config: ["metrics": ["listen": "127.0.0.1:\(port)"]])
        try harness.startReady()
        var text = ""
        try await waitUntilAsync(timeout: .seconds(20), "metrics with the worker up") {
            guard let response = try? await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/metrics"), timeout: .seconds(5)),
                  let body = try? await response.body.collect(upTo: 1 << 20) else { return false }
            text = String(buffer: body)
            return text.contains("bot_worker_up 1")
        }
        #expect(text.contains("# TYPE bot_worker_restarts_total counter"))
        #expect(text.contains("bot_supervisor_rss_bytes "))
        let missing = try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/other"), timeout: .seconds(5))
        #expect(missing.status.code == 404)
        #expect(try harness.terminate() == 0)
    }

    @Test func aCrashedWorkerLeavesItsBacktraceAndExitInErrorsLog() throws {
        // A long heartbeat timeout: the crash handler has time to print its backtrace. The worker
        // traps right after ready (fault injection), a real crash every time it starts.
        let harness = try SupervisorHarness(config: ["worker": ["heartbeatTimeoutSeconds": 30, "restartDelaySeconds": 5]])
        try harness.start(environment: ["BOT_WORKER_FAULT": "crash-after-ready"])
        try waitUntil(timeout: .seconds(60), "the crash in errors.log") {
            harness.log("errors").contains { $0["message"] as? String == "worker ended unexpectedly" }
        }
        let report = try #require(harness.log("errors").first { $0["message"] as? String == "worker ended unexpectedly" })
        #expect((report["reason"] as? String)?.contains("signal") == true)
        let backtrace = (report["backtrace"] as? [String]) ?? []
        #expect(backtrace.first?.contains("Program crashed") == true, "\(backtrace.prefix(3))")
        #expect(backtrace.contains { $0.contains("crashed:") })  // the crashed thread's frames
        let before = (report["last_output"] as? [String]) ?? []
        #expect(before.contains { $0.contains("injected fault") }, "\(before)")
        #expect(try harness.terminate() == 0)
    }
}

/// A TCP port nobody listens on now.
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw SupervisorHarness.Timeout(description: "no free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}
