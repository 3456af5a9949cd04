import IPC
import Logging
import TestSupport
import Testing

@testable import BotWorker

@Suite struct DiscordRESTTests {
    let guild = GuildID(81_384_788_765_712_384)
    let user = UserID(80_351_110_224_678_912)
    let role = RoleID(41_771_983_423_143_936)

    func client(_ server: ScriptedHTTPServer) -> DiscordREST {
        DiscordREST(baseURL: server.baseURL, token: Secret("bot-token"), logger: Logger(label: "test"))
    }

    @Test func requestsCarryAuthorizationUserAgentAndAnEncodedAuditReason() async throws {
        let server = try await ScriptedHTTPServer { _, _ in .init(status: 204) }
        let rest = client(server)
        try await rest.addRole(guild: guild, user: user, role: role, reason: "verified: clicked ✓ & waited")
        let request = try #require(server.requests.first)
        #expect(request.method == "PUT")
        #expect(request.uri == "/api/v10/guilds/\(guild)/members/\(user)/roles/\(role)")
        #expect(request.headers["authorization"] == "Bot bot-token")
        #expect(request.headers["user-agent"]?.hasPrefix("DiscordBot (") == true)
        #expect(request.headers["x-audit-log-reason"] == "verified%3A%20clicked%20%E2%9C%93%20%26%20waited")
        try await server.close()
    }

    @Test func anExhaustedBucketWaitsForItsReset() async throws {
        let server = try await ScriptedHTTPServer { _, _ in
            .init(status: 204, headers: ["X-RateLimit-Bucket": "b1", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "3.0"])
        }
        let rest = client(server)
        try await rest.addRole(guild: guild, user: user, role: role, reason: nil)
        try await rest.removeRole(guild: guild, user: user, role: role, reason: nil)  // a different route, its own bucket
        try await rest.addRole(guild: guild, user: user, role: role, reason: nil)
        let requests = server.requests
        #expect(requests.count == 3)
        #expect(requests[2].at - requests[0].at >= .milliseconds(2980))
        // The other route went at once: well inside the 3 s (with room for a loaded machine).
        #expect(requests[1].at - requests[0].at < .milliseconds(2500))
        try await server.close()
    }

    @Test func a429IsWaitedOutAndRetried() async throws {
        let server = try await ScriptedHTTPServer { _, index in
            index == 0
                ? .init(status: 429, headers: ["X-RateLimit-Scope": "user"], body: #"{"message": "You are being rate limited.", "retry_after": 0.25, "global": false}"#)
                : .init(status: 200, body: #"{"id": "1"}"#)
        }
        let rest = client(server)
        let message = try await rest.createMessage(channel: ChannelID(5), .object(["content": .string("hi")]))
        #expect(message?["id"] == .string("1"))
        let requests = server.requests
        #expect(requests.count == 2)
        #expect(requests[1].at - requests[0].at >= .milliseconds(240))
        #expect(await rest.headroom().invalidRequests == 1)
        try await server.close()
    }

    @Test func aGlobal429HoldsOtherRoutesToo() async throws {
        let server = try await ScriptedHTTPServer { _, index in
            index == 0
                ? .init(status: 429, headers: ["X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"], body: #"{"message": "global", "retry_after": 0.4, "global": true}"#)
                : .init(status: 204)
        }
        let rest = client(server)
        try await rest.removeRole(guild: guild, user: user, role: role, reason: nil)  // the global 429, retried
        let held = server.requests
        #expect(held.count == 2)
        #expect(held[1].at - held[0].at >= .milliseconds(380))
        // While a global hold lasts, another route waits as well.
        let server2 = try await ScriptedHTTPServer { _, index in
            index == 0  // the role change: the message request is sent only after it arrived
                ? .init(status: 429, headers: ["X-RateLimit-Global": "true"], body: #"{"message": "global", "retry_after": 0.4, "global": true}"#)
                : .init(status: 204)
        }
        let rest2 = client(server2)
        async let first: Void = rest2.addRole(guild: guild, user: user, role: role, reason: nil)
        // Once the client has read the 429 (it counts it as an invalid request when it sets the
        // global hold; polled with a deadline, so a loaded machine only makes the wait longer)…
        let deadline = ContinuousClock.now + .seconds(10)
        while await rest2.headroom().invalidRequests == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(await rest2.headroom().invalidRequests == 1)
        try await rest2.createMessage(channel: ChannelID(7), .object(["content": .string("x")]))
        try await first
        let requests = server2.requests
        let limited = try #require(requests.first { $0.uri.contains("/guilds/") })
        let message = try #require(requests.first { $0.uri.contains("/channels/") })
        #expect(message.at - limited.at >= .milliseconds(380))
        try await server.close()
        try await server2.close()
    }

    @Test func errorsCarryDiscordsCodeAndAreCountedWhenInvalid() async throws {
        let server = try await ScriptedHTTPServer { _, _ in
            .init(status: 403, body: #"{"message": "Missing Permissions", "code": 50013}"#)
        }
        let rest = client(server)
        await #expect {
            try await rest.addRole(guild: guild, user: user, role: role, reason: nil)
        } throws: { error in
            (error as? DiscordREST.Failure) == DiscordREST.Failure(
                route: "PUT /guilds/{guild}/members/{user}/roles/{role}", status: 403, code: 50013, message: "Missing Permissions"
            )
        }
        #expect(await rest.headroom().invalidRequests == 1)
        #expect(server.requests.count == 1)  // a 403 is not retried
        try await server.close()
    }

    @Test func theTokenIsNeverInAFailure() async throws {
        let server = try await ScriptedHTTPServer { _, _ in .init(status: 401, body: #"{"message": "401: Unauthorized", "code": 0}"#) }
        let rest = client(server)
        do {
            _ = try await rest.member(guild: guild, user: user)
            Issue.record("no error")
        } catch {
            #expect(!"\(error)".contains("bot-token"))
            #expect(!String(reflecting: error).contains("bot-token"))
        }
        try await server.close()
    }
}
