import FoundationEssentials
import Glibc
import IPC
import TestSupport
import Testing

@testable import Supervisor

@Suite struct DashboardAccessTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let token = String(repeating: "ab", count: 32)

    @Test func aLoginCodeWorksOnceAndExpires() throws {
        let access = DashboardAccess(token: token)
        let code = access.mintCode(now: now)
        let session = try #require(access.login(code: code, address: "a", now: now.addingTimeInterval(5)))
        #expect(access.login(code: code, address: "a", now: now.addingTimeInterval(6)) == nil)
        let late = access.mintCode(now: now)
        #expect(access.login(code: late, address: "a", now: now.addingTimeInterval(DashboardAccess.codeLifetime + 1)) == nil)
        #expect(access.authenticate(cookie: session.id, bearer: nil, address: "a", now: now.addingTimeInterval(10)) == session)
        #expect(access.authenticate(cookie: session.id, bearer: nil, address: "a", now: now.addingTimeInterval(DashboardAccess.sessionLifetime + 10)) == nil)
    }

    @Test func theTokenLogsInAndAnythingElseIsAFailure() {
        let access = DashboardAccess(token: token)
        #expect(access.login(token: token, address: "a", now: now) != nil)
        #expect(access.login(token: token + "x", address: "b", now: now) == nil)
        #expect(access.authenticate(cookie: "made-up", bearer: nil, address: "b", now: now) == nil)
        #expect(access.authenticate(cookie: nil, bearer: token, address: "c", now: now) != nil)
        #expect(!access.isLimited("b", now: now))
        // A stale cookie (a session that ended with a restart) is no failure, however often an
        // open tab retries; a wrong bearer token is.
        for second in 0..<20 {
            #expect(access.authenticate(cookie: "stale", bearer: nil, address: "d", now: now.addingTimeInterval(Double(second))) == nil)
        }
        #expect(!access.isLimited("d", now: now.addingTimeInterval(20)))
        for second in 0..<10 {
            #expect(access.authenticate(cookie: nil, bearer: "wrong", address: "e", now: now.addingTimeInterval(Double(second))) == nil)
        }
        #expect(access.isLimited("e", now: now.addingTimeInterval(10)))
    }

    @Test func tenFailuresInAMinuteLimitThatAddressOnly() {
        let access = DashboardAccess(token: token)
        for second in 0..<10 {
            #expect(access.login(token: "wrong", address: "10.0.0.1", now: now.addingTimeInterval(Double(second))) == nil)
        }
        #expect(access.isLimited("10.0.0.1", now: now.addingTimeInterval(10)))
        #expect(!access.isLimited("10.0.0.2", now: now.addingTimeInterval(10)))
        // A minute after the first failures they no longer count.
        #expect(!access.isLimited("10.0.0.1", now: now.addingTimeInterval(70)))
    }

    @Test func csrfIsTheSessionsOwnAndABearerNeedsNone() throws {
        let access = DashboardAccess(token: token)
        let one = try #require(access.login(token: token, address: "a", now: now))
        let two = try #require(access.login(token: token, address: "a", now: now))
        #expect(access.csrfValid(one.csrf, for: one))
        #expect(!access.csrfValid(two.csrf, for: one))
        #expect(!access.csrfValid(nil, for: one))
        let bearer = try #require(access.authenticate(cookie: nil, bearer: token, address: "a", now: now))
        #expect(access.csrfValid(nil, for: bearer))
        access.logout(one)
        #expect(access.authenticate(cookie: one.id, bearer: nil, address: "a", now: now) == nil)
    }

    @Test func theTokenFileIsMadeOnceWithMode0600() throws {
        let dir = try makeTemporaryDirectory("dash")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/dashboard.token"
        let first = try DashboardAccess.loadOrCreateToken(path)
        #expect(first.token.count == 64)
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600)
        chmod(path, 0o644)
        let second = try DashboardAccess.loadOrCreateToken(path)
        #expect(second.token == first.token && second.widened)
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600)
        try Data("short\n".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: ConfigError.self) { try DashboardAccess.loadOrCreateToken(path) }
    }

    @Test func pagesEscapeNamesAndTheLinkNamesTheHost() {
        #expect(DashboardAssets.escape("<b>\"x\" & 'y'</b>") == "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;")
        #expect(DashboardLink.url(listen: "127.0.0.1:8080", code: "abc") == "http://127.0.0.1:8080/login?code=abc")
        #expect(DashboardLink.url(listen: "[::1]:9000", code: "abc") == "http://[::1]:9000/login?code=abc")
        #expect(!DashboardLink.url(listen: "0.0.0.0:8080", code: "abc").contains("0.0.0.0"))
        #expect(DashboardRoutes.isSnowflake("123456789012345678") && !DashboardRoutes.isSnowflake("12/../x") && !DashboardRoutes.isSnowflake(""))
    }
}

@Suite struct SampleSeriesTests {
    func snapshot(pid: Int32, received: Int, restarts: Int = 0) -> StatusSnapshot {
        var worker = WorkerStatus(pid: pid, state: .ready, restarts: restarts)
        worker.events = EventReport(received: received, writeLatencyP50Ms: 2, writeLatencyP99Ms: 9)
        worker.rssBytes = 30 << 20
        return StatusSnapshot(supervisor: SupervisorStatus(pid: 1, version: "t", startedAt: "", state: "running", rssBytes: 20 << 20), worker: worker, alerts: [])
    }

    @Test func theRateIsTheCountersGrowthOfOneWorker() {
        var series = SampleSeries(capacity: 3)
        series.add(snapshot(pid: 10, received: 100), now: 0)
        series.add(snapshot(pid: 10, received: 600), now: 10)
        // A new worker's counter starts again: no rate for that sample, not a negative one.
        series.add(snapshot(pid: 11, received: 20, restarts: 1), now: 20)
        series.add(snapshot(pid: 11, received: 220, restarts: 1), now: 30)
        #expect(series.samples.map(\.eventsPerSecond) == [50, nil, 20])
        #expect(series.samples.count == 3)
        #expect(series.samples.last?.restarts == 1 && series.samples.last?.latencyP99Ms == 9 && series.samples.last?.workerRSS == 30 << 20)
        #expect(series.since(15).map(\.t) == [20, 30])
    }
}
