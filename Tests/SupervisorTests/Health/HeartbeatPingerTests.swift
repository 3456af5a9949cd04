import IPC
import Testing

@testable import Supervisor

/// The outside heartbeat's decision: which URL, which method, what body.
@Suite struct HeartbeatPingerTests {
    let url = "https://hc-ping.com/0f4c1b2e-secret"

    func status(_ checks: [(String, CheckStatus, String)]) -> HealthStatus {
        let list = checks.map { HealthStatus.Check(name: $0.0, status: $0.1, detail: $0.2) }
        return HealthStatus(status: HealthRules.overall(list), lastRunAt: nil, checks: list)
    }

    @Test func allOkIsAPlainGetOfTheURL() {
        let ping = HeartbeatPinger.ping(for: status([("database", .ok, "quick_check ok"), ("disk-data", .ok, "50% free")]), url: url)
        #expect(ping == .init(url: url, method: .GET, body: nil))
    }

    @Test func warningsAloneAreStillOk() {
        let ping = HeartbeatPinger.ping(for: status([("memory", .warn, "worker 900 MB")]), url: url)
        #expect(ping == .init(url: url, method: .GET, body: nil))
    }

    @Test func aCriticalCheckPostsToFailNamingTheFailingChecks() {
        let ping = HeartbeatPinger.ping(for: status([
            ("database", .ok, "quick_check ok"),
            ("errors", .critical, "60 errors in 5 min"),
            ("memory", .warn, "worker 900 MB"),
            ("disk-data", .critical, "2% free"),
        ]), url: url)
        #expect(ping.url == url + "/fail")
        #expect(ping.method == .POST)
        #expect(ping.body == """
            2 health checks are critical: errors, disk-data
            critical errors: 60 errors in 5 min
            critical disk-data: 2% free
            warn memory: worker 900 MB

            """)
    }

    @Test func failURLKeepsAQueryAndDropsATrailingSlash() {
        #expect(HeartbeatPinger.failURL("https://hc-ping.com/abc/") == "https://hc-ping.com/abc/fail")
        #expect(HeartbeatPinger.failURL("https://hc-ping.com/abc?rid=1") == "https://hc-ping.com/abc/fail?rid=1")
        #expect(HeartbeatPinger.failURL("http://127.0.0.1:9/p") == "http://127.0.0.1:9/p/fail")
    }

    @Test func theBodyStaysUnderTenKilobytes() {
        let long = String(repeating: "é", count: 20_000)
        let ping = HeartbeatPinger.ping(for: status([("errors", .critical, long)]), url: url)
        let body = ping.body ?? ""
        #expect(body.utf8.count <= HeartbeatPinger.maxBodyBytes)
        #expect(body.hasSuffix("(truncated)"))
        #expect(body.hasPrefix("1 health check is critical: errors\n"))
    }

    @Test func errorsAreRedactedOfTheURL() {
        struct Failure: Error, CustomStringConvertible { var description: String }
        let text = HeartbeatPinger.redacted(Failure(description: "connect to \(url)/fail timed out; \(url)"), Secret(url))
        #expect(!text.contains("secret"))
        #expect(text == "connect to <alerts.heartbeatURL>/fail timed out; <alerts.heartbeatURL>")
    }

    @Test func theHealthCheckShowsTheLastPing() {
        #expect(HealthMonitor.heartbeatCheck(nil).status == .ok)
        let failed = HealthMonitor.heartbeatCheck(.init(at: "2026-12-05T12:00:00Z", ok: false, detail: "not sent: connection refused"))
        #expect(failed.status == .warn)
        #expect(failed.name == "heartbeat")
        #expect(failed.detail == "alerts.heartbeatURL: last ping at 2026-12-05T12:00:00Z: not sent: connection refused")
    }
}
