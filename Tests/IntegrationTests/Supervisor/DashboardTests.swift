import AsyncHTTPClient
import Foundation
import Glibc
import IPC
import TestSupport
import Testing

/// The dashboard on the real supervisor: what happens when its address is taken or it is off.
/// (Its pages are tested in a real browser: Tests/Browser/dashboard-test.)
@Suite(.serialized) struct DashboardTests {
    struct PortTaken: Error { var port: Int }

    /// A listening socket on 127.0.0.1:`port`, held until closed.
    func occupy(_ port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard ok, listen(fd, 1) == 0 else { close(fd); throw PortTaken(port: port) }
        return fd
    }

    @Test func anAddressInUseIsAWarningAndTheBotRunsOn() throws {
        let harness = try SupervisorHarness()
        let taken = try occupy(harness.dashboardPort)
        defer { close(taken) }
        try harness.startReady()
        let snapshot = try harness.waitForStatus(timeout: .seconds(20), "the dashboard's warning") { status in
            status.alerts.contains { $0.severity == .warning && $0.message.contains("the dashboard could not listen on 127.0.0.1:\(harness.dashboardPort)") }
        }
        #expect(snapshot.worker.state == .ready)
        #expect(harness.log("supervisor").contains { ($0["message"] as? String) == "dashboard not started" })
        // Everything else answers: a backup goes through.
        let backup = try SupervisorHarness.cli(["backup", "--socket", harness.statusSocket])
        #expect(backup.status == 0, "\(backup.stderr)")
        #expect(try harness.terminate() == 0)
    }

    @Test func dashboardURLGivesAOneTimeLinkAndSaysSoWhenOff() async throws {
        let harness = try SupervisorHarness()
        try harness.startReady()
        let run = try SupervisorHarness.cli(["dashboard-url", "--socket", harness.statusSocket])
        #expect(run.status == 0)
        let url = run.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(url.hasPrefix("http://127.0.0.1:\(harness.dashboardPort)/login?code="))
        // The token file: 0600 in the data dir, and its token in no log line.
        var info = stat()
        #expect(stat(harness.dataDir + "/dashboard.token", &info) == 0 && info.st_mode & 0o777 == 0o600)
        let token = try String(contentsOfFile: harness.dataDir + "/dashboard.token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try harness.terminate() == 0)
        for name in try FileManager.default.contentsOfDirectory(atPath: harness.logsDir) {
            let text = try String(contentsOfFile: harness.logsDir + "/" + name, encoding: .utf8)
            #expect(!text.contains(token), "the dashboard token is in \(name)")
        }

        let off = try SupervisorHarness(config: ["dashboard": ["listen": ""]])
        try off.startReady()
        let refused = try SupervisorHarness.cli(["dashboard-url", "--socket", off.statusSocket])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("the dashboard is off (dashboard.listen is \"\")"))
        #expect(!FileManager.default.fileExists(atPath: off.dataDir + "/dashboard.token"))
        #expect(try off.terminate() == 0)
    }

    /// The public leaderboard: refused until the guild turns it on, then rank, name, level and XP.
    @Test func aGuildsLeaderboardIsPublicOnlyOnceTurnedOn() async throws {
        let bot = try await FeatureTests.Bot()
        let guild = try #require(try await bot.sandbox.get("/sandbox/state")["guild"]?["id"]?.stringValue)
        let member = try await bot.join(accountAgeDays: 400)
        // Its display name: the sandbox gives member-NN the global name "Member NN" (in the
        // messages it sends), which the bot prefers to the username.
        let username = try #require(try await bot.member(member)["user"]?["username"]?.stringValue)
        let name = "Member " + username.dropFirst("member-".count)
        try await bot.sandbox.post("/sandbox/message", .object(["user": .string(member), "content": .string("hello")]))
        try await waitUntilAsync(timeout: .seconds(10), "the message counted") {
            (try? bot.harness.sqlite("SELECT messages FROM xp_members WHERE user_id = '\(member)'")) == "1"
        }
        let url = "http://127.0.0.1:\(bot.harness.dashboardPort)/leaderboard/\(guild)"
        func page() async throws -> (status: UInt, body: String) {
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 1 << 20)
            return (response.status.code, String(buffer: body))
        }
        let off = try await page()
        #expect(off.status == 404 && off.body.contains("not public") && !off.body.contains(name))

        let reply = try await bot.command("levels", [FeatureTests.Bot.sub("config", [FeatureTests.Bot.option("leaderboard", 3, .string("public"))])])
        #expect(reply["content"]?.stringValue?.contains("leaderboard page is now public") == true)
        let on = try await page()
        #expect(on.status == 200)
        #expect(on.body.contains("<td>1</td><td>\(DashboardEscaping.html(name))</td>"))
        #expect(!on.body.contains(member), "the page shows a user id")
        #expect(try bot.harness.terminate() == 0)
    }
}

/// How the dashboard escapes text in HTML (the names in the sandbox are plain, but say so).
enum DashboardEscaping {
    static func html(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;").replacingOccurrences(of: "'", with: "&#39;")
    }
}
